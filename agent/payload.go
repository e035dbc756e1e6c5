package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/payload"
)

// badSourceTTL is how long a source that failed a payload's digest goes
// to the back of that payload's list.
const badSourceTTL = 10 * time.Minute

// PayloadOptions configure a PayloadFollower.
type PayloadOptions struct {
	// Tenant is the agent's tenant: entries are signed for it.
	Tenant string
	// Keys returns the tenant's catalog keys (from enrollment and the last
	// renewal).
	Keys func() []CatalogKey
	// Gateway sends requests to the gateways: the relay fallback.
	Gateway http.RoundTripper
	// Sources fetches from vendor CDNs and mirrors. Default a client that
	// dials directly (or through the environment's HTTP proxy) with
	// connect and header timeouts, and never follows redirects.
	Sources *http.Client
	// HoldBack is the number of final bytes held until the digest
	// matches. Default payload.DefaultHoldBack.
	HoldBack int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the follower's logs. Default: none.
	Logger *zap.Logger
}

// PayloadStats count what a PayloadFollower did.
type PayloadStats struct {
	Followed          int64 // signed payload answers handled
	Verified          int64 // downloads that completed with the right digest
	SignatureFailures int64 // redirects refused: bad signature, unknown key, expired, wrong path
	SourceFailures    int64 // sources that failed (refused, short, digest mismatch)
	DigestMismatches  int64 // of which digest or prefix mismatches
	Failed            int64 // downloads that no source completed
	BytesFromSources  int64 // payload bytes from CDNs and mirrors
	BytesRelayed      int64 // payload bytes through the gateway's relay
}

// PayloadFollower follows the gateway's signed payload answers: a 307 to
// a vendor CDN, or a relayed payload carrying its signed entry. It checks
// the entry's signature with the tenant's catalog keys, downloads from the
// sources in order while hashing, and hands out a payload only as far as
// it is verified (payload.Fetch): the reader never sees the end of a
// payload whose digest did not match.
type PayloadFollower struct {
	o   PayloadOptions
	log *zap.Logger

	followed, verified, sigFails, srcFails, mismatches, failed, fromSources, relayed atomic.Int64

	mu  sync.Mutex
	bad map[string]time.Time // digest + " " + source -> until
}

// NewPayloadFollower returns a follower with o's options.
func NewPayloadFollower(o PayloadOptions) *PayloadFollower {
	if o.Sources == nil {
		o.Sources = defaultSourceClient()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &PayloadFollower{o: o, log: o.Logger.Named("payload"), bad: map[string]time.Time{}}
}

func defaultSourceClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Stats returns the counters so far.
func (f *PayloadFollower) Stats() PayloadStats {
	return PayloadStats{
		Followed: f.followed.Load(), Verified: f.verified.Load(), SignatureFailures: f.sigFails.Load(),
		SourceFailures: f.srcFails.Load(), DigestMismatches: f.mismatches.Load(), Failed: f.failed.Load(),
		BytesFromSources: f.fromSources.Load(), BytesRelayed: f.relayed.Load(),
	}
}

// Transport returns base with signed payload answers followed.
func (f *PayloadFollower) Transport(base http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		return f.Follow(resp)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (rt roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return rt(req) }

// Follow returns resp as is unless it is a signed payload answer; then it
// returns the verified payload (200), or an error answer (502, or 503 with
// Retry-After when the relay asked to wait) that says why.
func (f *PayloadFollower) Follow(resp *http.Response) (*http.Response, error) {
	redirect := payload.IsRedirect(resp.StatusCode, resp.Header)
	relayed := resp.StatusCode == http.StatusOK && resp.Header.Get(payload.HeaderSignature) != ""
	if !redirect && !relayed {
		return resp, nil
	}
	f.followed.Add(1)
	req := resp.Request
	entry, err := f.verify(resp, redirect)
	if err != nil {
		resp.Body.Close()
		f.sigFails.Add(1)
		f.log.Warn("payload redirect refused", zap.String("path", req.URL.Path), zap.Error(err))
		return ownAnswer(req, http.StatusBadGateway, "sekisho agent: payload redirect refused: "+err.Error(), 0), nil
	}
	if req.Method == http.MethodHead {
		resp.Body.Close()
		out := ownAnswer(req, http.StatusOK, "", 0)
		out.ContentLength = entry.Size
		out.Header.Set("Content-Length", strconv.FormatInt(entry.Size, 10))
		return out, nil
	}
	var first io.ReadCloser
	sources := f.order(entry)
	if relayed {
		first = resp.Body // the gateway relayed it: that is the relay source, already open
		sources = append([]string{payload.Relay}, slices.DeleteFunc(sources, func(s string) bool { return s == payload.Relay })...)
	} else {
		resp.Body.Close()
	}
	return f.fetch(req, entry, sources, first), nil
}

// verify reads and checks the signed entry of a payload answer.
func (f *PayloadFollower) verify(resp *http.Response, redirect bool) (*payload.Signed, error) {
	parse := payload.ParseEntry
	if redirect {
		parse = payload.ParseRedirect
	}
	entry, err := parse(resp.Header, resp.Request.URL.Path)
	if err != nil {
		return nil, err
	}
	var keys []payload.PublicKey
	if f.o.Keys != nil {
		for _, k := range f.o.Keys() {
			keys = append(keys, payload.PublicKey{ID: k.ID, Key: k.PublicKey})
		}
	}
	if err := payload.Verify(keys, f.o.Tenant, resp.Request.URL.Path, entry, f.o.Now()); err != nil {
		return nil, err
	}
	return entry, nil
}

// fetch downloads entry from sources and answers with the verified bytes.
func (f *PayloadFollower) fetch(req *http.Request, entry *payload.Signed, sources []string, first io.ReadCloser) *http.Response {
	log := f.log.With(zap.String("path", entry.Path), zap.String("sha256", entry.SHA256))
	open := func(ctx context.Context, src string) (io.ReadCloser, error) {
		if src == payload.Relay {
			if first != nil {
				b := first
				first = nil
				return &countingBody{ReadCloser: b, n: &f.relayed}, nil
			}
			return f.openRelay(ctx, req)
		}
		return f.openSource(ctx, src, entry.Size)
	}
	d, err := payload.Fetch(req.Context(), payload.FetchConfig{
		SHA256: entry.SHA256, Size: entry.Size, Sources: sources, Open: open, HoldBack: f.o.HoldBack,
		OnFailure: func(src string, err error) { f.sourceFailed(entry, src, err, log) },
	})
	if first != nil {
		first.Close()
	}
	if err != nil {
		f.failed.Add(1)
		log.Warn("payload not downloaded", zap.Error(err))
		var wait *retryLater
		if errors.As(err, &wait) {
			return ownAnswer(req, http.StatusServiceUnavailable, "sekisho agent: payload relay busy, retry later", wait.after)
		}
		return ownAnswer(req, http.StatusBadGateway, "sekisho agent: "+err.Error(), 0)
	}
	body := io.ReadCloser(&verifiedBody{d: d, f: f, log: log})
	if entry.Size <= int64(f.holdBack()) {
		// All of it is held back anyway: verify it before answering, so
		// that a payload no source delivers gets a clear error status.
		data, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			return ownAnswer(req, http.StatusBadGateway, "sekisho agent: "+err.Error(), 0)
		}
		body = io.NopCloser(bytes.NewReader(data))
	}
	out := ownAnswer(req, http.StatusOK, "", 0)
	out.Header.Set("Content-Type", "application/octet-stream")
	out.Header.Set("Content-Length", strconv.FormatInt(entry.Size, 10))
	out.ContentLength = entry.Size
	out.Body = body
	return out
}

func (f *PayloadFollower) holdBack() int {
	if f.o.HoldBack > 0 {
		return f.o.HoldBack
	}
	return payload.DefaultHoldBack
}

// sourceFailed counts and logs a failed source and, for a digest
// mismatch, moves it to the back of this payload's list for a while.
func (f *PayloadFollower) sourceFailed(entry *payload.Signed, src string, err error, log *zap.Logger) {
	f.srcFails.Add(1)
	if errors.Is(err, payload.ErrDigestMismatch) || errors.Is(err, payload.ErrPrefixMismatch) {
		f.mismatches.Add(1)
		f.mu.Lock()
		f.bad[entry.SHA256+" "+src] = f.o.Now().Add(badSourceTTL)
		f.mu.Unlock()
	}
	log.Warn("payload source failed", zap.String("source", src), zap.Error(err))
}

// order returns the entry's sources, those that recently failed its
// digest moved to the back.
func (f *PayloadFollower) order(entry *payload.Signed) []string {
	now := f.o.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var good, bad []string
	for _, src := range entry.Sources {
		key := entry.SHA256 + " " + src
		if until, ok := f.bad[key]; ok && now.Before(until) {
			bad = append(bad, src)
			continue
		}
		delete(f.bad, key)
		good = append(good, src)
	}
	return append(good, bad...)
}

// retryLater is a relay that answered 503 with Retry-After: the tenant's
// budget is spent for now.
type retryLater struct{ after time.Duration }

func (r *retryLater) Error() string { return fmt.Sprintf("relay busy: retry after %v", r.after) }

// openRelay asks the gateway to relay the payload through the tunnel.
func (f *PayloadFollower) openRelay(ctx context.Context, orig *http.Request) (io.ReadCloser, error) {
	if f.o.Gateway == nil {
		return nil, errors.New("no gateway to relay through")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, orig.URL.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Host = orig.Host
	req.Header.Set(payload.HeaderSource, payload.Relay)
	resp, err := f.o.Gateway.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
				return nil, &retryLater{after: time.Duration(secs) * time.Second}
			}
		}
		return nil, fmt.Errorf("relay answered %s", resp.Status)
	}
	return &countingBody{ReadCloser: resp.Body, n: &f.relayed}, nil
}

// openSource starts a download from a CDN or mirror.
func (f *PayloadFollower) openSource(ctx context.Context, src string, size int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.o.Sources.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d, want %d", payload.ErrSizeMismatch, resp.ContentLength, size)
	}
	return &countingBody{ReadCloser: resp.Body, n: &f.fromSources}, nil
}

// verifiedBody is the answer's body: the download, counted once it ends.
type verifiedBody struct {
	d    *payload.Download
	f    *PayloadFollower
	log  *zap.Logger
	done atomic.Bool
}

func (b *verifiedBody) Read(p []byte) (int, error) {
	n, err := b.d.Read(p)
	if err != nil && b.done.CompareAndSwap(false, true) {
		if err == io.EOF {
			b.f.verified.Add(1)
			b.log.Info("payload verified", zap.String("source", b.d.Source()), zap.Int("sources_failed", len(b.d.Failures())))
		} else {
			b.f.failed.Add(1)
			b.log.Error("payload download failed: connection to the client aborted, nothing unverified delivered as complete", zap.Error(err))
		}
	}
	return n, err
}

func (b *verifiedBody) Close() error { return b.d.Close() }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ownAnswer makes a response of the agent's own.
func ownAnswer(req *http.Request, status int, msg string, retryAfter time.Duration) *http.Response {
	h := http.Header{}
	body := ""
	if msg != "" {
		body = msg + "\n"
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Request: req,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
	}
}
