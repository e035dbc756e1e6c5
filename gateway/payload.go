package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

// Classes of agent requests, for metrics and the access log.
const (
	classManagement = ""
	classRedirect   = "redirect"
	classPayload    = "payload" // relayed under the connector's budget
)

// decodeCatalog reads a snapshot's payload catalog. Unknown fields are
// allowed, so that connectors can be upgraded before gateways.
func decodeCatalog(raw json.RawMessage) (*payload.Index, error) {
	var c payload.Catalog
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("payload catalog: %w", err)
	}
	return payload.NewIndex(&c)
}

// payloadDecision is what the catalog says about a request.
type payloadDecision struct {
	entry    *payload.Signed // catalogued: relayed with its signed headers, or redirected
	redirect bool
	relay    bool // cross the tunnel as payload, under the budget
}

// decidePayload classifies a request: a catalogued GET or HEAD is
// redirected to its first source, or relayed when that source is "relay"
// or the agent asks for the relay (its fallback); an uncatalogued request
// under a payload prefix, or on a path whose responses were found large,
// is relayed as payload. Anything else is a management request.
func (t *tenant) decidePayload(r *http.Request, st *state, now time.Time) (payloadDecision, error) {
	path := r.URL.Path
	if e := st.catalog.Lookup(path); e != nil && now.Before(e.Expires) &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead) {
		wantRelay := r.Header.Get(payload.HeaderSource) == payload.Relay
		switch {
		case wantRelay || e.Sources[0] == payload.Relay:
			if !e.HasRelay() {
				return payloadDecision{}, errNotRelayed
			}
			return payloadDecision{entry: e, relay: true}, nil
		default:
			return payloadDecision{entry: e, redirect: true}, nil
		}
	}
	return payloadDecision{relay: st.catalog.Policy().IsPayloadPath(path) || t.large.has(path, now)}, nil
}

var errNotRelayed = fmt.Errorf("this payload is not served through the tunnel")

// redirect answers a catalogued payload request with a 307 to the first
// source, carrying the signed entry. Nothing of the payload crosses the
// tunnel.
func (s *Server) redirect(w *recorder, r *http.Request, t *tenant, e *payload.Signed) {
	payload.WriteRedirect(w.Header(), e)
	w.class = classRedirect
	src := "other"
	if u, err := url.Parse(e.Sources[0]); err == nil {
		src = u.Host
	}
	s.metrics.redirects.WithLabelValues(t.name, src).Inc()
	if r.Method == http.MethodGet {
		s.metrics.redirectedBytes.WithLabelValues(t.name).Add(float64(e.Size))
		s.metrics.totalRedirected.Add(e.Size)
	}
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// largePaths remembers, per tenant, paths whose responses were above the
// size threshold, so that later requests for them go out as payload from
// the start. Bounded: when full, an arbitrary entry makes room.
type largePaths struct {
	mu    sync.Mutex
	paths map[string]time.Time // path -> until
}

const (
	largePathsMax = 4096
	largePathsTTL = time.Hour
)

func (l *largePaths) add(path string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paths == nil {
		l.paths = map[string]time.Time{}
	}
	if _, ok := l.paths[path]; !ok && len(l.paths) >= largePathsMax {
		for p := range l.paths {
			delete(l.paths, p)
			break
		}
	}
	l.paths[path] = now.Add(largePathsTTL)
}

func (l *largePaths) has(path string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.paths[path]
	if ok && !now.Before(until) {
		delete(l.paths, path)
		return false
	}
	return ok
}

// relayTransport sends management requests on pooled tunnel streams and
// payload requests each on its own payload stream, which the connector
// admits under the tenant's budget. A GET on a pooled stream whose
// response turns out larger than the tenant's size threshold is dropped
// (closing that stream) and sent again as payload; its path is
// remembered.
type relayTransport struct {
	r       *relay
	pooled  *http.Transport
	payload *http.Transport
}

func (rt *relayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ri := req.Context().Value(routeKey{}).(*routeInfo)
	if ri.payload {
		return rt.payload.RoundTrip(req)
	}
	resp, err := rt.pooled.RoundTrip(req)
	if err != nil || ri.threshold <= 0 {
		return resp, err
	}
	if resp.ContentLength < 0 {
		// Length unknown (chunked): relayed as it is, but a body that
		// grows past the threshold marks its path for next time.
		resp.Body = &thresholdBody{ReadCloser: resp.Body, left: ri.threshold, over: func() {
			ri.tenant.large.add(req.URL.Path, time.Now())
		}}
		return resp, nil
	}
	if resp.ContentLength <= ri.threshold {
		return resp, nil
	}
	switch {
	case req.Method == http.MethodHead:
		ri.tenant.large.add(req.URL.Path, time.Now())
		return resp, nil
	case req.Method != http.MethodGet || (req.Body != nil && req.Body != http.NoBody):
		return resp, nil
	}
	ri.tenant.large.add(req.URL.Path, time.Now())
	resp.Body.Close() // mid-body: the transport drops the stream, the connector stops reading the core
	rt.r.s.metrics.reclassified.WithLabelValues(ri.tenant.name).Inc()
	rt.r.s.log.Debug("large response on a management stream: sent again as payload",
		zap.String("tenant", ri.tenant.name), zap.String("path", req.URL.Path), zap.Int64("content_length", resp.ContentLength))
	ri.payload = true
	return rt.payload.RoundTrip(req)
}

// thresholdBody calls over once more than left bytes have been read.
type thresholdBody struct {
	io.ReadCloser
	left int64
	over func()
}

func (b *thresholdBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left >= 0 {
		if b.left -= int64(n); b.left < 0 {
			b.over()
		}
	}
	return n, err
}

// closeIdle drops the pooled streams.
func (rt *relayTransport) closeIdle() {
	rt.pooled.CloseIdleConnections()
	rt.payload.CloseIdleConnections()
}

// signRelayed adds the signed entry's headers to a catalogued payload that
// was relayed, so that the agent verifies relayed bytes as it verifies a
// CDN's. Payload headers from the core are dropped: only the catalog
// speaks for payloads.
func signRelayed(resp *http.Response) error {
	payload.StripHeaders(resp.Header)
	ri, _ := resp.Request.Context().Value(routeKey{}).(*routeInfo)
	if ri != nil && ri.entry != nil && resp.StatusCode == http.StatusOK {
		payload.WriteEntry(resp.Header, ri.entry)
	}
	return nil
}

// dialPayload opens a payload stream for the transport's key
// SERVICE.TENANT.tunnel:80.
func (r *relay) dialPayload(ctx context.Context, _, addr string) (net.Conn, error) {
	return r.dialKind(ctx, addr, tunnel.KindPayload)
}
