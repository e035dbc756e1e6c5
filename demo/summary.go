package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/internal/hist"
)

// Summary is what the agents saw during a demo run.
type Summary struct {
	Agents         int              `json:"agents"`
	Enrolled       int              `json:"enrolled"`
	EnrollSeconds  float64          `json:"enroll_seconds"`
	Transport      string           `json:"transport"`
	AgentTransport string           `json:"agent_transport"`
	DurationSec    float64          `json:"duration_seconds"`
	RequestsOK     int64            `json:"requests_ok"`
	Failed         int64            `json:"requests_failed"`
	RPS            float64          `json:"requests_per_second"`
	BytesRelay     int64            `json:"bytes_relayed"`
	P50ms          float64          `json:"latency_p50_ms"`
	P99ms          float64          `json:"latency_p99_ms"`
	ByKind         map[string]int64 `json:"requests_by_kind"`
	Errors         []string         `json:"errors,omitempty"`
	// Deferred counts downloads answered 503 with Retry-After (the relay
	// budget was spent): deferrals, not failures.
	Deferred int64 `json:"deferred"`
	// TunnelBytes is what crossed the tunnel (the connector's count);
	// RedirectedBytes the payload bytes the gateway sent to the CDN
	// instead.
	TunnelBytes     int64        `json:"tunnel_bytes"`
	RedirectedBytes int64        `json:"redirected_bytes"`
	Payloads        PayloadStats `json:"payloads"`
}

// PayloadStats are the agents' payload followers' counts.
type PayloadStats struct {
	Verified       int64 `json:"verified"`        // downloads whose digest matched
	VerifyFailures int64 `json:"verify_failures"` // bad signatures and digest mismatches
	FromCDN        int64 `json:"bytes_from_cdn"`
	Relayed        int64 `json:"bytes_relayed"` // patch bytes that came through the tunnel
}

// stats collects the agents' outcomes.
type stats struct {
	ok, failed, bytes, deferred, relayed atomic.Int64
	lat                                  hist.Histogram
	mu                                   sync.Mutex
	byKind                               map[string]int64
	errs                                 map[string]int
}

func newStats() *stats { return &stats{byKind: map[string]int64{}, errs: map[string]int{}} }

// observe runs one request and records its outcome. Small requests' latency
// goes to the histogram; patch downloads are measured in bytes.
func (s *stats) observe(kind string, f func() (int64, error)) {
	start := time.Now()
	n, err := f()
	s.bytes.Add(n)
	if errors.Is(err, errDeferred) {
		s.deferred.Add(1)
		return
	}
	if kind == "relayed" {
		s.relayed.Add(n)
	}
	if err != nil {
		s.failed.Add(1)
		s.mu.Lock()
		if len(s.errs) < 10 {
			s.errs[kind+": "+err.Error()]++
		}
		s.mu.Unlock()
		return
	}
	s.ok.Add(1)
	if kind == "policy" || kind == "inventory" {
		s.lat.Record(time.Since(start))
	}
	s.mu.Lock()
	s.byKind[kind]++
	s.mu.Unlock()
}

// progress writes one line per second until ctx ends.
func (s *stats) progress(ctx context.Context, w io.Writer, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastOK int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := s.ok.Load()
		fmt.Fprintf(w, "  %3.0fs  ok %7d  failed %d  %6d req/s  received %s  p99 %s\n",
			time.Since(start).Seconds(), ok, s.failed.Load(), ok-lastOK, mib(s.bytes.Load()),
			s.lat.Quantile(0.99).Round(10*time.Microsecond))
		lastOK = ok
	}
}

func (s *stats) summary(o Options, elapsed time.Duration, transport string) *Summary {
	sum := &Summary{
		Agents: o.Agents, Transport: transport, AgentTransport: o.AgentTransport, DurationSec: elapsed.Seconds(),
		RequestsOK: s.ok.Load(), Failed: s.failed.Load(), BytesRelay: s.bytes.Load(), Deferred: s.deferred.Load(),
		Payloads: PayloadStats{Relayed: s.relayed.Load()},
		P50ms:    ms(s.lat.Quantile(0.50)), P99ms: ms(s.lat.Quantile(0.99)), ByKind: map[string]int64{},
	}
	sum.RPS = float64(sum.RequestsOK) / elapsed.Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.byKind {
		sum.ByKind[k] = v
	}
	for e, n := range s.errs {
		sum.Errors = append(sum.Errors, fmt.Sprintf("%dx %s", n, e))
	}
	sort.Strings(sum.Errors)
	return sum
}

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nsekisho demo: %d agents (over %s) for %.1fs, tunnel over %s\n", s.Agents, s.AgentTransport, s.DurationSec, s.Transport)
	fmt.Fprintf(w, "  enrolled  %d agents through the gateway in %.2fs (keys made on each, certificates from the connector's CA)\n",
		s.Enrolled, s.EnrollSeconds)
	fmt.Fprintf(w, "  requests  ok %d  failed %d  (%.0f/s; policy %d, inventory %d, patches %d catalogued + %d relayed)\n",
		s.RequestsOK, s.Failed, s.RPS, s.ByKind["policy"], s.ByKind["inventory"], s.ByKind["patch"], s.ByKind["relayed"])
	fmt.Fprintf(w, "  payloads  %s redirected to the CDN (%d downloads verified by the agents, %d verification failures); %s relayed under the budget (%d MiB/s, %d at once; %d downloads deferred by 503 + Retry-After)\n",
		mib(s.RedirectedBytes), s.Payloads.Verified, s.Payloads.VerifyFailures, mib(s.Payloads.Relayed),
		relayBudget>>20, relayConcurrent, s.Deferred)
	fmt.Fprintf(w, "  tunnel    %s crossed the tunnel; the agents received %s\n", mib(s.TunnelBytes), mib(s.BytesRelay))
	fmt.Fprintf(w, "  latency   p50 %.2f ms  p99 %.2f ms (policy and inventory requests)\n", s.P50ms, s.P99ms)
	for _, e := range s.Errors {
		fmt.Fprintf(w, "  error     %s\n", e)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
