package gateway

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/tunnel"
)

func (s *Server) newHTTPServer() *http.Server {
	l := s.cfg.Limits
	h2 := &http.HTTP2Config{MaxConcurrentStreams: l.MaxRequestsPerDevice}
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		HTTP2:             h2,
		ConnContext:       withConnInfo,
		ConnState:         s.connState,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
}

// connInfo caches the principal of one agent connection; HTTP/2 requests
// on it share it.
type connInfo struct {
	once sync.Once
	p    auth.Principal
	err  error
}

type connInfoKey struct{}

func withConnInfo(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connInfoKey{}, &connInfo{})
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

// ServeHTTP routes one agent request: refuse, or relay down the tunnel.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, err := principal(r)
	if err != nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	t := s.tenants[p.Tenant]
	st := t.state.Load()
	if r.Method == http.MethodConnect {
		http.Error(w, "CONNECT is not served here", http.StatusMethodNotAllowed)
		return
	}
	if !cleanPath(r.URL.Path) {
		http.Error(w, "path must not contain . or .. segments", http.StatusBadRequest)
		return
	}
	svc := st.match(hostOnly(r.Host), r.URL.Path)
	if svc == nil {
		http.Error(w, "no service for this host and path", http.StatusNotFound)
		return
	}
	if t.numSessions() == 0 {
		s.unavailable(w, s.cfg.RetryAfter, "no connector for this tenant")
		return
	}
	release, ok := s.devices.acquire(p)
	if !ok {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many concurrent requests from this device", http.StatusTooManyRequests)
		return
	}
	defer release()
	ctx := context.WithValue(r.Context(), routeKey{}, &routeInfo{tenant: t, svc: svc, p: p, remote: r.RemoteAddr})
	s.relay.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// unavailable answers 503 with a Retry-After between base and twice base,
// so that waiting agents come back spread out.
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
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newDeviceLimiter(max int) *deviceLimiter {
	return &deviceLimiter{max: max, n: map[string]int{}}
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
