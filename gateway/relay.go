package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/tunnel"
)

// Identity headers the gateway sets toward services. Any header an agent
// sends whose name starts with IdentityHeaderPrefix is dropped first.
const (
	IdentityHeaderPrefix = "Sekisho-"
	HeaderTenant         = "Sekisho-Tenant"
	HeaderDeviceID       = "Sekisho-Device-Id"
	HeaderCertSHA256     = "Sekisho-Cert-Sha256"
	HeaderClientAddr     = "Sekisho-Client-Addr"
)

// poolHostSuffix ends the synthetic host names that key the transport's
// pool of tunnel streams: SERVICE.TENANT.tunnel.
const poolHostSuffix = ".tunnel"

// relay is the reverse proxy that carries agent requests down tunnels.
type relay struct {
	s             *Server
	proxy         *httputil.ReverseProxy
	transport     *relayTransport
	streamTimeout time.Duration
}

func newRelay(s *Server, l Limits) *relay {
	r := &relay{s: s, streamTimeout: l.StreamTimeout}
	pooled := &http.Transport{
		DialContext:           r.dial,
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   l.MaxIdleStreams,
		IdleConnTimeout:       l.IdleStreamTimeout,
		ResponseHeaderTimeout: l.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ReadBufferSize:        32 << 10,
		WriteBufferSize:       16 << 10,
	}
	payloads := pooled.Clone()
	payloads.DialContext = r.dialPayload
	payloads.DisableKeepAlives = true // one payload stream is one download: the budget counts streams
	r.transport = &relayTransport{r: r, pooled: pooled, payload: payloads}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      r.transport,
		ModifyResponse: signRelayed,
		BufferPool:     bufferPool{},
		ErrorHandler:   r.errorHandler,
		ErrorLog:       zap.NewStdLog(s.log.Named("relay")),
	}
	return r
}

// rewrite points the request at its service's stream pool and sets the
// identity headers. ReverseProxy has already removed hop-by-hop headers,
// including any the agent named in Connection, and X-Forwarded-*.
func rewrite(pr *httputil.ProxyRequest) {
	ri := pr.In.Context().Value(routeKey{}).(*routeInfo)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = ri.svc.Name + "." + ri.tenant.name + poolHostSuffix
	out.Host = pr.In.Host
	if ri.svc.HostRewrite != "" {
		out.Host = ri.svc.HostRewrite
	}
	for k := range out.Header {
		if strings.HasPrefix(k, IdentityHeaderPrefix) {
			delete(out.Header, k)
		}
	}
	out.Header.Del("Forwarded")
	pr.SetXForwarded()
	out.Header.Set(HeaderTenant, ri.p.Tenant)
	out.Header.Set(HeaderDeviceID, ri.p.DeviceID)
	out.Header.Set(HeaderCertSHA256, hex.EncodeToString(ri.p.CertSHA256[:]))
	out.Header.Set(HeaderClientAddr, ri.remote)
}

// errNoConnector means the tenant has no live connector session.
var errNoConnector = errors.New("no connector session for the tenant")

// dial opens a pooled HTTP stream for the transport's pool key
// SERVICE.TENANT.tunnel:80.
func (r *relay) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	return r.dialKind(ctx, addr, tunnel.KindHTTP)
}

// dialKind opens a stream of kind for SERVICE.TENANT.tunnel:80 on the
// tenant's least loaded session.
func (r *relay) dialKind(ctx context.Context, addr string, kind tunnel.Kind) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	name, rest, _ := strings.Cut(strings.TrimSuffix(host, poolHostSuffix), ".")
	t := r.s.tenant(rest)
	if t == nil {
		return nil, fmt.Errorf("relay: no tenant %q", rest)
	}
	ts := t.pick()
	if ts == nil {
		return nil, errNoConnector
	}
	r.s.metrics.streamsOpened.WithLabelValues(t.name, kind.String()).Inc()
	st, err := tunnel.OpenRelay(ctx, ts.sess, &tunnel.Header{Kind: kind, Service: name}, r.streamTimeout)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s/%s via connector %s: %w", t.name, name, ts.connectorID, err)
	}
	return st, nil
}

// errorHandler turns relay failures into answers an agent can act on.
func (r *relay) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	ri := req.Context().Value(routeKey{}).(*routeInfo)
	log := r.s.log.With(zap.String("tenant", ri.tenant.name), zap.String("service", ri.svc.Name),
		zap.String("device_id", ri.p.DeviceID))
	var se *tunnel.StatusError
	if errors.As(err, &se) {
		r.s.metrics.streamRefusals.WithLabelValues(ri.tenant.name, se.Reply.Status.String()).Inc()
	}
	retryAfter := r.s.current().cfg.RetryAfter
	switch {
	case errors.Is(err, context.Canceled):
		// The agent went away; nothing to answer.
		log.Debug("agent canceled request", zap.Error(err))
		w.WriteHeader(499)
	case errors.As(err, &se) && se.Reply.Status == tunnel.StatusOverBudget:
		r.s.metrics.budgetRefusals.WithLabelValues(ri.tenant.name).Inc()
		r.s.unavailable(w, max(se.Reply.RetryAfter, time.Second), "over budget, retry later")
	case errors.As(err, &se) && se.Reply.Status == tunnel.StatusForbidden:
		log.Info("connector forbade stream", zap.String("message", se.Reply.Message))
		http.Error(w, "forbidden", http.StatusForbidden)
	case errors.As(err, &se) && se.Reply.Status == tunnel.StatusUnavailable && se.Reply.RetryAfter > 0:
		log.Warn("service unavailable", zap.String("message", se.Reply.Message))
		r.s.unavailable(w, se.Reply.RetryAfter, "service unavailable, retry later")
	case errors.As(err, &se):
		log.Warn("connector refused stream", zap.Stringer("status", se.Reply.Status), zap.String("message", se.Reply.Message))
		http.Error(w, "service unavailable: "+se.Reply.Status.String(), http.StatusBadGateway)
	case errors.Is(err, errNoConnector) || ri.tenant.numSessions() == 0:
		r.s.metrics.unavailable.WithLabelValues(ri.tenant.name).Inc()
		r.s.unavailable(w, retryAfter, "no connector for this tenant")
	default:
		log.Warn("relay failed", zap.Error(err))
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}
}

// close drops the pooled streams.
func (r *relay) close() { r.transport.closeIdle() }

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

var proxyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (bufferPool) Get() []byte  { return *(proxyBufs.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { proxyBufs.Put(&b) }
