package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/tunnel"
)

// EnrollALPN marks enrollment connections: no client certificate is
// required (an expired one is how a PC renews after a holiday), and
// nothing but the enrollment endpoint is behind it (docs/ENROLLMENT.md).
const EnrollALPN = "sekisho-enroll/1"

// maxEnrollBody bounds an enrollment request.
const maxEnrollBody = 16 << 10

// enrollRequest is the agent's JSON.
type enrollRequest struct {
	Token    string `json:"token"`
	DeviceID string `json:"device_id"`
	Tenant   string `json:"tenant"` // polling without the token
	CSR      string `json:"csr"`
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
}

// enrollTLS is the enrollment policy: certificates asked for, never
// required or verified here (the connector checks a renewing one).
func (s *Server) enrollTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.NextProtos = []string{EnrollALPN}
	c.ClientAuth = tls.RequestClientCert
	c.VerifyConnection = nil
	c.SessionTicketsDisabled = true
	return c
}

// newEnrollServer serves the enrollment endpoint on connections that
// negotiated EnrollALPN.
func (s *Server) newEnrollServer() *webServer {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/enroll", s.serveEnroll)
	mux.HandleFunc("POST /v1/renew", s.serveEnroll)
	return &webServer{srv: &http.Server{
		Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10,
		ErrorLog:    zap.NewStdLog(s.log.Named("enroll")),
		ConnContext: withEnrollTLS,
	}}
}

// enrollConn hides the *tls.Conn from net/http, which closes connections
// whose ALPN names a protocol it has no handler for; the TLS state travels
// in the request context instead.
type enrollConn struct {
	net.Conn
	state tls.ConnectionState
}

type enrollTLSKey struct{}

func withEnrollTLS(ctx context.Context, c net.Conn) context.Context {
	if ec, ok := c.(*enrollConn); ok {
		return context.WithValue(ctx, enrollTLSKey{}, &ec.state)
	}
	return ctx
}

// enrollState is the TLS state of an enrollment request's connection.
func enrollState(r *http.Request) *tls.ConnectionState {
	cs, _ := r.Context().Value(enrollTLSKey{}).(*tls.ConnectionState)
	return cs
}

// serveEnroll routes an enrollment request to its tenant's connector.
func (s *Server) serveEnroll(w http.ResponseWriter, r *http.Request) {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !s.enrollRL.allow("source " + ip) {
		s.metrics.enrollments.WithLabelValues("", "", "rate_limited").Inc()
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many enrollment requests", http.StatusTooManyRequests)
		return
	}
	var req enrollRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrollBody)).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	cs := enrollState(r)
	fwd, tenantName, err := s.enrollOp(r.URL.Path, cs, &req)
	if err != nil {
		s.metrics.enrollments.WithLabelValues("", fwd.Op, "refused").Inc()
		s.log.Info("enrollment refused at the gateway", zap.String("remote_addr", r.RemoteAddr), zap.String("reason", err.Error()))
		s.writeEnroll(w, http.StatusForbidden, tunnel.EnrollBody{Status: "refused"})
		return
	}
	t := s.tenant(tenantName)
	if t == nil || t.state.Load() == nil {
		s.metrics.enrollments.WithLabelValues("", fwd.Op, "refused").Inc()
		s.writeEnroll(w, http.StatusForbidden, tunnel.EnrollBody{Status: "refused"})
		return
	}
	if !s.enrollRL.allow("tenant " + t.name) {
		s.metrics.enrollments.WithLabelValues(t.name, fwd.Op, "rate_limited").Inc()
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many enrollment requests for this tenant", http.StatusTooManyRequests)
		return
	}
	fwd.ClientAddr = r.RemoteAddr
	ans, err := s.forwardEnroll(r.Context(), t, fwd, cs)
	if err != nil {
		s.metrics.enrollments.WithLabelValues(t.name, fwd.Op, "unavailable").Inc()
		s.log.Warn("enrollment not forwarded", zap.String("tenant", t.name), zap.Error(err))
		s.unavailable(w, s.current().cfg.RetryAfter, "enrollment unavailable, retry later")
		return
	}
	s.metrics.enrollments.WithLabelValues(t.name, fwd.Op, ans.Body.Status).Inc()
	s.writeEnroll(w, ans.HTTPStatus, ans.Body)
}

// enrollOp names the operation and the tenant: from the token (its
// checksum drops garbage without a database), or from the certificate a
// renewing agent presents.
func (s *Server) enrollOp(path string, cs *tls.ConnectionState, req *enrollRequest) (*tunnel.EnrollRequest, string, error) {
	fwd := &tunnel.EnrollRequest{CSR: req.CSR, Hostname: req.Hostname, OS: req.OS, DeviceID: req.DeviceID, Token: req.Token}
	if path == "/v1/renew" {
		fwd.Op = tunnel.OpRenew
		if cs == nil || len(cs.PeerCertificates) == 0 {
			return fwd, "", errors.New("renewal without a certificate")
		}
		for _, c := range cs.PeerCertificates {
			fwd.CertChain = append(fwd.CertChain, c.Raw)
		}
		p, err := auth.PrincipalOf(cs.PeerCertificates[0])
		fwd.DeviceID = p.DeviceID
		return fwd, p.Tenant, err
	}
	fwd.Op = tunnel.OpEnroll
	if req.DeviceID != "" {
		fwd.Op = tunnel.OpPoll
	}
	if req.Token != "" {
		parts, err := auth.ParseToken(req.Token)
		return fwd, parts.Tenant, err
	}
	if fwd.Op == tunnel.OpPoll && auth.ValidTenant(req.Tenant) == nil {
		return fwd, req.Tenant, nil
	}
	return fwd, "", errors.New("no token")
}

// forwardEnroll opens an enrollment stream to the tenant's connector and
// waits for its decision.
func (s *Server) forwardEnroll(ctx context.Context, t *tenant, req *tunnel.EnrollRequest, cs *tls.ConnectionState) (*tunnel.EnrollAnswer, error) {
	ts := t.pick()
	if ts == nil {
		return nil, errNoConnector
	}
	hdr := &tunnel.Header{Kind: tunnel.KindEnroll, Service: tunnel.EnrollService, DeviceID: req.DeviceID, ClientAddr: req.ClientAddr}
	if cs != nil && len(cs.PeerCertificates) > 0 {
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		hdr.CertSHA256 = sum[:]
	}
	timeout := s.current().cfg.Limits.StreamTimeout
	st, err := tunnel.OpenRelay(ctx, ts.sess, hdr, timeout)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(3 * timeout))
	if err := tunnel.WriteMessage(st, tunnel.MsgEnrollRequest, req); err != nil {
		return nil, err
	}
	typ, body, err := tunnel.ReadMessage(st, tunnel.MaxEnrollLen)
	if err != nil {
		return nil, err
	}
	if typ != tunnel.MsgEnrollAnswer {
		return nil, errors.New("connector answered with another message")
	}
	var ans tunnel.EnrollAnswer
	if err := tunnel.Decode(typ, body, &ans); err != nil {
		return nil, err
	}
	if ans.HTTPStatus < 200 || ans.HTTPStatus > 599 {
		return nil, errors.New("connector answered an invalid status")
	}
	return &ans, nil
}

func (s *Server) writeEnroll(w http.ResponseWriter, code int, body tunnel.EnrollBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

// rateLimits keeps one token bucket per key (source address, tenant),
// forgetting keys idle for a while so memory stays bounded.
type rateLimits struct {
	perSource, perTenant rate.Limit
	burst                int
	mu                   sync.Mutex
	buckets              map[string]*bucket
	swept                time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newRateLimits(perSourcePerMinute, perTenantPerMinute float64) *rateLimits {
	return &rateLimits{perSource: rate.Limit(perSourcePerMinute / 60), perTenant: rate.Limit(perTenantPerMinute / 60),
		burst: 5, buckets: map[string]*bucket{}}
}

func (l *rateLimits) allow(key string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.used) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		// Bursts of ten seconds' worth (at least 5), so a quick flurry
		// within the rate is not refused.
		lim := l.perSource
		if len(key) > 7 && key[:7] == "tenant " {
			lim = l.perTenant
		}
		burst := max(l.burst, int(float64(lim)*10))
		b = &bucket{lim: rate.NewLimiter(lim, burst)}
		l.buckets[key] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1)
}
