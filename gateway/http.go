package gateway

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

// newWebServer builds an agent-facing HTTP server with limits l.
func (s *Server) newWebServer(l Limits) *webServer {
	h2 := &http.HTTP2Config{MaxConcurrentStreams: l.MaxRequestsPerDevice}
	return &webServer{limits: l, srv: &http.Server{
		Handler:           &handler{s: s},
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		HTTP2:             h2,
		ConnContext:       withConnInfo,
		ConnState:         s.connState,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}}
}

// connInfo caches the principal of one agent connection; HTTP/2 and
// HTTP/3 requests on it share it. It also knows whether the connection is
// idle: a draining gateway closes idle HTTP/3 connections at once, as
// net/http does with idle HTTP/1.1 and HTTP/2 ones, instead of waiting for
// agents to act on GOAWAY.
type connInfo struct {
	once sync.Once
	p    auth.Principal
	err  error

	active    atomic.Int64 // requests in the handler
	idleSince atomic.Int64 // unix nanoseconds: the connection's start or its last request's end
	closing   atomic.Bool  // a draining gateway is closing it
}

func newConnInfo() *connInfo {
	ci := &connInfo{}
	ci.idleSince.Store(time.Now().UnixNano())
	return ci
}

// idleFor reports whether the connection has had no request in the
// handler for at least d.
func (ci *connInfo) idleFor(d time.Duration, now time.Time) bool {
	return ci.active.Load() == 0 && now.Sub(time.Unix(0, ci.idleSince.Load())) >= d
}

func (ci *connInfo) begin() { ci.active.Add(1) }

func (ci *connInfo) end() {
	ci.idleSince.Store(time.Now().UnixNano())
	ci.active.Add(-1)
}

type connInfoKey struct{}

func withConnInfo(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connInfoKey{}, newConnInfo())
}

// principal returns the identity behind r's connection. The chain was
// verified in the handshake; this only reads the names.
func principal(r *http.Request) (auth.Principal, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return auth.Principal{}, auth.ErrNoCertificate
	}
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		return auth.PrincipalOf(r.TLS.PeerCertificates[0])
	}
	ci.once.Do(func() { ci.p, ci.err = auth.PrincipalOf(r.TLS.PeerCertificates[0]) })
	return ci.p, ci.err
}

// handler serves agent requests with the current generation's tenants,
// limits and relay.
type handler struct{ s *Server }

// ServeHTTP routes one agent request: refuse, or relay down the tunnel.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	start := time.Now()
	if r.ProtoMajor == 3 { // only a draining HTTP/3 server asks (closeIdleH3)
		if ci, _ := r.Context().Value(connInfoKey{}).(*connInfo); ci != nil {
			ci.begin()
			defer ci.end()
		}
	}
	p, err := principal(r)
	t := (*tenant)(nil)
	if err == nil {
		t = s.tenant(p.Tenant)
	}
	if t == nil {
		// A tenant removed by a reload after this connection was made.
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if s.altSvc != "" && r.ProtoMajor < 3 {
		w.Header().Set("Alt-Svc", s.altSvc)
	}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &rec.up}
	}
	svc := h.route(rec, r, s.current(), t, p)
	s.observe(t, svc, p, r, rec, time.Since(start))
}

// route answers or relays the request and returns the service it went to
// ("" when refused before a service was chosen).
func (h *handler) route(w *recorder, r *http.Request, g *generation, t *tenant, p auth.Principal) string {
	s := h.s
	if r.Method == http.MethodConnect {
		return h.connect(w, r, g, t, p)
	}
	if !cleanPath(r.URL.Path) {
		http.Error(w, "path must not contain . or .. segments", http.StatusBadRequest)
		return ""
	}
	st := t.state.Load()
	pd, err := t.decidePayload(r, st, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return ""
	}
	if pd.redirect {
		s.redirect(w, r, t, pd.entry)
		return ""
	}
	svc := st.match(hostOnly(r.Host), r.URL.Path)
	if svc == nil {
		http.Error(w, "no service for this host and path", http.StatusNotFound)
		return ""
	}
	if pd.relay {
		w.class = classPayload
	}
	release, ok := s.admit(w, g, t, p, s.devices, 1, "too many concurrent requests from this device")
	if !ok {
		return svc.Name
	}
	defer release()
	ri := &routeInfo{tenant: t, svc: svc, p: p, remote: r.RemoteAddr, payload: pd.relay, entry: pd.entry,
		threshold: st.catalog.Policy().SizeThreshold}
	g.relay.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, ri)))
	if ri.payload {
		w.class = classPayload // also when the size threshold moved it
	}
	return svc.Name
}

// observe records one finished request in metrics, the status page and,
// sampled, the access log.
func (s *Server) observe(t *tenant, svc string, p auth.Principal, r *http.Request, rec *recorder, d time.Duration) {
	m := s.metrics
	m.requests.WithLabelValues(t.name, svc, codeClass(rec.status)).Observe(d.Seconds())
	if rec.down > 0 {
		m.bytes.WithLabelValues(t.name, "down").Add(float64(rec.down))
	}
	if rec.up > 0 {
		m.bytes.WithLabelValues(t.name, "up").Add(float64(rec.up))
	}
	if rec.class == classPayload && rec.down > 0 {
		m.payloadBytes.WithLabelValues(t.name).Add(float64(rec.down))
	}
	m.totalRequests.Add(1)
	m.totalRelayed.Add(rec.down + rec.up)
	t.requests.Add(1)
	if rec.status >= 500 {
		m.totalErrors.Add(1)
		t.errors.Add(1)
	}
	s.latency.Record(time.Now(), d)
	sample := s.current().cfg.AccessLog.Sample
	if sample > 0 && (sample >= 1 || rand.Float64() < sample) {
		s.access.Info("request", zap.String("tenant", t.name), zap.String("device_id", p.DeviceID),
			zap.String("service", svc), zap.String("class", rec.class), zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", rec.status), zap.Int64("bytes_in", rec.up), zap.Int64("bytes_out", rec.down),
			zap.Duration("duration", d), zap.String("proto", r.Proto), zap.String("remote_addr", r.RemoteAddr))
	}
}

// recorder notes the status and counts the bytes of a response.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	down, up    int64
	class       string // classManagement, classRedirect or classPayload
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.down += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countingBody counts the request body bytes read.
type countingBody struct {
	io.ReadCloser
	n *int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	*b.n += int64(n)
	return n, err
}

// unavailable answers 503 with a Retry-After between base and twice base,
// so that waiting agents come back spread out.
// admit lets a request of device p through to tenant t's connector: 503
// with Retry-After when the tenant has none, 429 when the device is at
// lim's limit. The caller calls release when the request is done.
func (s *Server) admit(w http.ResponseWriter, g *generation, t *tenant, p auth.Principal, lim *deviceLimiter,
	retryAfter int, tooMany string) (release func(), ok bool) {
	if t.numSessions() == 0 {
		s.metrics.unavailable.WithLabelValues(t.name).Inc()
		s.unavailable(w, g.cfg.RetryAfter, "no connector for this tenant")
		return nil, false
	}
	if release, ok = lim.acquire(p); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		http.Error(w, tooMany, http.StatusTooManyRequests)
	}
	return release, ok
}

func (s *Server) unavailable(w http.ResponseWriter, base time.Duration, msg string) {
	secs := max(int(base/time.Second), 1)
	secs += rand.IntN(secs + 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// routeInfo travels from ServeHTTP to the relay's Rewrite and dialer.
type routeInfo struct {
	tenant *tenant
	svc    *tunnel.Service
	p      auth.Principal
	remote string
	// payload sends the request on its own payload stream, under the
	// tenant's budget; entry, when set, is its catalog entry.
	payload   bool
	entry     *payload.Signed
	threshold int64 // Content-Length above which a GET is payload; 0: none
}

type routeKey struct{}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// cleanPath rejects paths that a core could resolve outside the prefix
// that routed them: . and .. segments, also with path parameters (..;x,
// which Java servers treat as ..), backslashes (IIS treats them as /) and
// NUL. The path is the decoded one, so %2e%2e and %5c are caught too.
func cleanPath(p string) bool {
	if strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// deviceLimiter bounds each device's concurrent requests.
type deviceLimiter struct {
	mu  sync.Mutex
	max int
	n   map[string]int
}

func newDeviceLimiter(max int) *deviceLimiter {
	return &deviceLimiter{max: max, n: map[string]int{}}
}

// setMax changes the limit; requests in flight keep their slots.
func (d *deviceLimiter) setMax(max int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.max = max
}

func (d *deviceLimiter) acquire(p auth.Principal) (release func(), ok bool) {
	key := p.Tenant + "/" + p.DeviceID
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n[key] >= d.max {
		return nil, false
	}
	d.n[key]++
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.n[key]--; d.n[key] <= 0 {
			delete(d.n, key)
		}
	}, true
}
