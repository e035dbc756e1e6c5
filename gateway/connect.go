package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/internal/splice"
	"github.com/sekisho/sekisho/tunnel"
)

// connect serves CONNECT SERVICE:PORT: a raw TCP stream to a service the
// tenant declared as a CONNECT service. The authority names a service,
// never a host: there is no way to reach an arbitrary address.
func (h *handler) connect(w *recorder, r *http.Request, g *generation, t *tenant, p auth.Principal) string {
	s := h.s
	name := r.Host
	if host, _, err := net.SplitHostPort(r.Host); err == nil {
		name = host
	}
	svc := t.state.Load().connect[name]
	if svc == nil {
		http.Error(w, "not a CONNECT service of this tenant", http.StatusNotFound)
		return ""
	}
	release, ok := s.admit(w, g, t, p, s.connects, 5, "too many CONNECT streams from this device")
	if !ok {
		return svc.Name
	}
	defer release()
	st, err := h.openConnect(r.Context(), g, t, svc, p, r.RemoteAddr)
	if err != nil {
		h.connectRefused(w, t, svc, err, g)
		return svc.Name
	}
	defer st.Close()
	h.bridge(w, r, t, st)
	return svc.Name
}

// openConnect opens the tunnel stream of a CONNECT, carrying the device's
// identity so that the connector can check its groups.
func (h *handler) openConnect(ctx context.Context, g *generation, t *tenant, svc *tunnel.Service, p auth.Principal, remote string) (tunnel.Stream, error) {
	ts := t.pick()
	if ts == nil {
		return nil, errNoConnector
	}
	h.s.metrics.streamsOpened.WithLabelValues(t.name, tunnel.KindConnect.String()).Inc()
	hdr := &tunnel.Header{Kind: tunnel.KindConnect, Service: svc.Name, DeviceID: p.DeviceID,
		CertSHA256: p.CertSHA256[:], ClientAddr: remote}
	return tunnel.OpenRelay(ctx, ts.sess, hdr, g.cfg.Limits.StreamTimeout)
}

// connectRefused answers a CONNECT the connector (or its absence) refused.
func (h *handler) connectRefused(w http.ResponseWriter, t *tenant, svc *tunnel.Service, err error, g *generation) {
	var se *tunnel.StatusError
	switch {
	case errors.As(err, &se) && se.Reply.Status == tunnel.StatusForbidden:
		h.s.metrics.streamRefusals.WithLabelValues(t.name, se.Reply.Status.String()).Inc()
		http.Error(w, "this device may not use this service", http.StatusForbidden)
	case errors.As(err, &se) && se.Reply.Status == tunnel.StatusOverBudget:
		h.s.metrics.budgetRefusals.WithLabelValues(t.name).Inc()
		h.s.unavailable(w, max(se.Reply.RetryAfter, time.Second), "over budget, retry later")
	case errors.As(err, &se):
		h.s.metrics.streamRefusals.WithLabelValues(t.name, se.Reply.Status.String()).Inc()
		http.Error(w, "service unavailable: "+se.Reply.Status.String(), http.StatusBadGateway)
	case errors.Is(err, errNoConnector):
		h.s.unavailable(w, g.cfg.RetryAfter, "no connector for this tenant")
	default:
		h.s.log.Warn("connect failed", zap.String("tenant", t.name), zap.String("service", svc.Name), zap.Error(err))
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}
}

// bridge answers 200 and splices the agent's side of the CONNECT with the
// tunnel stream, half-close passed on both ways.
func (h *handler) bridge(w *recorder, r *http.Request, t *tenant, st tunnel.Stream) {
	if r.ProtoMajor == 1 {
		h.bridgeHijacked(w, t, st)
		return
	}
	// HTTP/2 (and 3): the request body is the agent's half, the response
	// body the service's.
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	conn := &streamConn{r: r.Body, w: w, flush: rc.Flush, done: make(chan struct{})}
	splice.Run(conn, st, splice.Config{HalfClose: true, Idle: connectIdle, OnAToB: w.countUp, OnBToA: w.countDown})
}

// connectIdle closes a CONNECT stream idle for that long.
const connectIdle = 30 * time.Minute

// bridgeHijacked takes over an HTTP/1.1 connection. It stays in the
// tenant's list of live agent connections until the splice ends.
func (h *handler) bridgeHijacked(w *recorder, t *tenant, st tunnel.Stream) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return
	}
	w.status = http.StatusOK
	defer h.s.forgetAgent(conn)
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	agent := net.Conn(conn)
	if brw.Reader.Buffered() > 0 {
		agent = &bufferedConn{Conn: conn, r: brw.Reader}
	}
	splice.Run(agent, st, splice.Config{HalfClose: true, Idle: connectIdle, OnAToB: w.countUp, OnBToA: w.countDown})
}

// bufferedConn reads what the HTTP server had already buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// streamConn makes an HTTP/2 CONNECT's request and response bodies one
// net.Conn for the splice.
type streamConn struct {
	r     io.ReadCloser
	w     io.Writer
	flush func() error
	mu    sync.Mutex
	done  chan struct{}
	once  sync.Once
}

func (c *streamConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *streamConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.w.Write(p)
	if err == nil {
		err = c.flush()
	}
	return n, err
}

// CloseWrite ends the response body: the handler returning does that, so
// here it only stops writes.
func (c *streamConn) CloseWrite() error { return nil }

func (c *streamConn) Close() error {
	c.once.Do(func() { close(c.done); c.r.Close() })
	return nil
}

func (c *streamConn) LocalAddr() net.Addr                { return nil }
func (c *streamConn) RemoteAddr() net.Addr               { return nil }
func (c *streamConn) SetDeadline(t time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return nil }

// countUp and countDown count CONNECT bytes like relayed bodies.
func (r *recorder) countUp(n int)   { r.up += int64(n) }
func (r *recorder) countDown(n int) { r.down += int64(n) }
