package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/internal/hist"
)

// stats collects what the agents saw.
type stats struct {
	connectStart, connectDone, holdDone time.Time

	connectedN, connectFailedN atomic.Int64
	connectRetriesN            atomic.Int64
	requests, failed, deferred atomic.Int64
	payloads, payloadBytes     atomic.Int64
	bytes                      atomic.Int64
	connectLat, reqLat         hist.Histogram

	// Reconnections: losses, returns, failed attempts, and the first loss
	// and last return (UnixNano) that bound a reconnect storm.
	lostN, backN, reconnectFailedN atomic.Int64
	firstLost, lastBack            atomic.Int64
	reconnectLat                   hist.Histogram

	mu    sync.Mutex
	kinds map[string]int64
	first map[string]string // first error text of each kind
}

func newStats() *stats {
	return &stats{kinds: map[string]int64{}, first: map[string]string{}}
}

func (s *stats) connected(d time.Duration) {
	s.connectedN.Add(1)
	s.connectLat.Record(d)
}

func (s *stats) connectFailed(err error) {
	s.connectFailedN.Add(1)
	s.noteError("connect_"+kindOf(err), err)
}

// request records one request; a 503 with Retry-After is a deferral (the
// gateway asked the agent to come back), not a failure.
func (s *stats) request(payload bool, n int64, d time.Duration, err error) {
	s.bytes.Add(n)
	var se *statusError
	switch {
	case err == nil:
		s.requests.Add(1)
		if payload {
			s.payloads.Add(1)
			s.payloadBytes.Add(n)
		} else {
			s.reqLat.Record(d)
		}
	case errors.As(err, &se) && se.code == 503 && se.retryAfter != "":
		s.deferred.Add(1)
	default:
		s.failed.Add(1)
		s.noteError(kindOf(err), err)
	}
}

// connectRetried records a failed first connect that will be retried.
func (s *stats) connectRetried(err error) {
	s.connectRetriesN.Add(1)
	s.noteError("connect_retry_"+kindOf(err), err)
}

// lost records an agent's lost connection and returns when it was lost.
func (s *stats) lost() time.Time {
	now := time.Now()
	s.lostN.Add(1)
	s.firstLost.CompareAndSwap(0, now.UnixNano())
	return now
}

// back records an agent served again after the loss at lostAt.
func (s *stats) back(lostAt time.Time) {
	now := time.Now()
	s.backN.Add(1)
	s.reconnectLat.Record(now.Sub(lostAt))
	for {
		last := s.lastBack.Load()
		if last >= now.UnixNano() || s.lastBack.CompareAndSwap(last, now.UnixNano()) {
			return
		}
	}
}

// reconnectFailed records a failed attempt to come back.
func (s *stats) reconnectFailed(err error) {
	s.reconnectFailedN.Add(1)
	s.noteError("reconnect_"+kindOf(err), err)
}

func (s *stats) noteError(kind string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kinds[kind]++
	if _, ok := s.first[kind]; !ok {
		s.first[kind] = err.Error()
	}
}

// kindOf classifies an error for the summary.
func kindOf(err error) string {
	var se *statusError
	var ne net.Error
	var ae tls.AlertError
	var re *tls.RecordHeaderError
	var ve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("status_%d", se.code)
	case errors.As(err, &ae) || errors.As(err, &re) || errors.As(err, &ve):
		return "tls"
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "eof"
	case errors.As(err, &ne):
		return "network"
	default:
		return "other"
	}
}

// progress writes a line per second until ctx ends.
func (s *stats) progress(ctx context.Context, w io.Writer, agents int) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := s.requests.Load()
		fmt.Fprintf(w, "  %4.0fs  connected %d/%d (failed %d)  down %d  %7d req/s  errors %d  deferred %d  p99 %s\n",
			time.Since(start).Seconds(), s.connectedN.Load(), agents, s.connectFailedN.Load(), s.lostN.Load()-s.backN.Load(),
			n-last, s.failed.Load(), s.deferred.Load(), s.reqLat.Quantile(0.99).Round(10*time.Microsecond))
		last = n
	}
}

// Summary is what a load run saw.
type Summary struct {
	Transport         string  `json:"transport"`
	Agents            int     `json:"agents"`
	Connected         int64   `json:"connected"`
	ConnectFailed     int64   `json:"connect_failed"`
	ConnectRetries    int64   `json:"connect_retries"`
	ConnectSeconds    float64 `json:"connect_seconds"`
	ConnectRate       float64 `json:"connects_per_second"`
	ConnectP50ms      float64 `json:"connect_p50_ms"`
	ConnectP99ms      float64 `json:"connect_p99_ms"`
	HoldSeconds       float64 `json:"hold_seconds"`
	Requests          int64   `json:"requests"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	Failed            int64   `json:"requests_failed"`
	Deferred          int64   `json:"requests_deferred"`
	P50ms             float64 `json:"latency_p50_ms"`
	P90ms             float64 `json:"latency_p90_ms"`
	P99ms             float64 `json:"latency_p99_ms"`
	P999ms            float64 `json:"latency_p999_ms"`
	Payloads          int64   `json:"payload_downloads"`
	Throughput        float64 `json:"throughput_bytes_per_second"`
	// Lost connections, agents back after one, failed attempts to come
	// back, agents still away when the run ended, how long a return took,
	// and the first loss and last return (RFC 3339) of the run.
	Lost            int64     `json:"lost"`
	Reconnected     int64     `json:"reconnected"`
	ReconnectFailed int64     `json:"reconnect_attempts_failed"`
	StillDown       int64     `json:"still_down"`
	ReconnectP50ms  float64   `json:"reconnect_p50_ms"`
	ReconnectP99ms  float64   `json:"reconnect_p99_ms"`
	ReconnectMaxms  float64   `json:"reconnect_max_ms"`
	FirstLost       time.Time `json:"first_lost,omitzero"`
	LastBack        time.Time `json:"last_back,omitzero"`

	Errors      map[string]int64 `json:"errors_by_kind"`
	FirstErrors []string         `json:"first_errors,omitempty"`
}

func (s *stats) summary(cfg Config) *Summary {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	conn := s.connectDone.Sub(s.connectStart).Seconds()
	holdSecs := s.holdDone.Sub(s.connectDone).Seconds()
	sum := &Summary{
		Transport: cfg.Transport, Agents: cfg.Agents, Connected: s.connectedN.Load(), ConnectFailed: s.connectFailedN.Load(),
		ConnectRetries: s.connectRetriesN.Load(),
		ConnectSeconds: conn, ConnectP50ms: ms(s.connectLat.Quantile(0.5)), ConnectP99ms: ms(s.connectLat.Quantile(0.99)),
		HoldSeconds: holdSecs, Requests: s.requests.Load(), Failed: s.failed.Load(), Deferred: s.deferred.Load(),
		P50ms: ms(s.reqLat.Quantile(0.5)), P90ms: ms(s.reqLat.Quantile(0.9)), P99ms: ms(s.reqLat.Quantile(0.99)),
		P999ms: ms(s.reqLat.Quantile(0.999)), Payloads: s.payloads.Load(), Errors: map[string]int64{},
	}
	s.reconnectSummary(sum)
	if cfg.Transport == "tcp" && cfg.HTTP2 {
		sum.Transport = "tcp-h2"
	}
	if conn > 0 {
		sum.ConnectRate = float64(sum.Connected) / conn
	}
	if holdSecs > 0 {
		sum.RequestsPerSecond = float64(sum.Requests) / holdSecs
		sum.Throughput = float64(s.bytes.Load()) / holdSecs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.kinds {
		sum.Errors[k] = v
		sum.FirstErrors = append(sum.FirstErrors, k+": "+s.first[k])
	}
	sort.Strings(sum.FirstErrors)
	return sum
}

func (s *stats) reconnectSummary(sum *Summary) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	sum.Lost, sum.Reconnected, sum.ReconnectFailed = s.lostN.Load(), s.backN.Load(), s.reconnectFailedN.Load()
	sum.StillDown = sum.Lost - sum.Reconnected
	sum.ReconnectP50ms = ms(s.reconnectLat.Quantile(0.5))
	sum.ReconnectP99ms = ms(s.reconnectLat.Quantile(0.99))
	sum.ReconnectMaxms = ms(s.reconnectLat.Quantile(1))
	if t := s.firstLost.Load(); t != 0 {
		sum.FirstLost = time.Unix(0, t).UTC()
	}
	if t := s.lastBack.Load(); t != 0 {
		sum.LastBack = time.Unix(0, t).UTC()
	}
}

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nsekisho loadgen: %d agents over %s\n", s.Agents, s.Transport)
	fmt.Fprintf(w, "  connect   %d ok, %d failed, %d retried attempts in %.1fs (%.0f/s; p50 %.1f ms, p99 %.1f ms)\n",
		s.Connected, s.ConnectFailed, s.ConnectRetries, s.ConnectSeconds, s.ConnectRate, s.ConnectP50ms, s.ConnectP99ms)
	fmt.Fprintf(w, "  requests  %d ok (%.0f/s over %.1fs), %d failed, %d deferred by 503\n",
		s.Requests, s.RequestsPerSecond, s.HoldSeconds, s.Failed, s.Deferred)
	fmt.Fprintf(w, "  latency   p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f ms (management requests)\n",
		s.P50ms, s.P90ms, s.P99ms, s.P999ms)
	fmt.Fprintf(w, "  traffic   %.1f MiB/s, %d payload downloads\n", s.Throughput/(1<<20), s.Payloads)
	if s.Lost > 0 {
		fmt.Fprintf(w, "  reconnect %d lost, %d back (p50 %.0f ms, p99 %.0f ms, max %.0f ms), %d failed attempts, %d still away\n",
			s.Lost, s.Reconnected, s.ReconnectP50ms, s.ReconnectP99ms, s.ReconnectMaxms, s.ReconnectFailed, s.StillDown)
	}
	if !s.FirstLost.IsZero() && !s.LastBack.IsZero() {
		fmt.Fprintf(w, "  storm     first loss to last return %.2fs\n", s.LastBack.Sub(s.FirstLost).Seconds())
	}
	for _, e := range s.FirstErrors {
		fmt.Fprintf(w, "  error     %s (x%d)\n", e, s.Errors[e[:indexColon(e)]])
	}
}

func indexColon(s string) int {
	for i := range s {
		if s[i] == ':' {
			return i
		}
	}
	return len(s)
}
