package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/proxyproto"
	"github.com/sekisho/sekisho/tunnel"
)

const tunnelALPN = tunnel.ALPN

// acceptLoop accepts TCP connections and hands each to a handshake
// goroutine, pausing while MaxHandshakes are in flight.
func (s *Server) acceptLoop(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
				continue
			case <-s.ctx.Done():
				return nil
			}
		}
		delay = 0
		select {
		case s.hsSem <- struct{}{}:
		case <-s.ctx.Done():
			c.Close()
			return nil
		}
		s.wg.Go(func() { s.handshake(c) })
	}
}

// handshake authenticates one connection within HandshakeTimeout and
// dispatches it by ALPN: tunnels to serveTunnel, agents to the HTTP server.
func (s *Server) handshake(c net.Conn) {
	released := false
	release := func() {
		if !released {
			released = true
			<-s.hsSem
		}
	}
	defer release()
	g := s.current()
	deadline := time.Now().Add(g.cfg.Limits.HandshakeTimeout)
	c.SetDeadline(deadline)
	c, err := s.readProxyHeader(c, g.cfg.ProxyProtocol.Trusted)
	if err != nil {
		s.refused(c, "", "proxy_protocol", err)
		c.Close()
		return
	}
	tc := tls.Server(c, s.tlsConf)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	err = tc.HandshakeContext(ctx)
	cancel()
	kind, _ := s.offered.LoadAndDelete(c)
	if err != nil {
		k, _ := kind.(string)
		s.refused(c, k, refusalReason(err), err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	switch tc.ConnectionState().NegotiatedProtocol {
	case certs.ACMETLSALPN:
		tc.Close() // the CA saw the challenge certificate; nothing more here
		return
	case EnrollALPN:
		s.metrics.handshakes.WithLabelValues("enroll", "ok", "").Inc()
		if !s.enroll.ln.push(&enrollConn{Conn: tc, state: tc.ConnectionState()}) {
			tc.Close()
		}
		return
	case tunnelALPN:
		s.metrics.handshakes.WithLabelValues("connector", "ok", "").Inc()
		s.serveTunnel(s.ctx, tc, release)
		return
	}
	s.metrics.handshakes.WithLabelValues("agent", "ok", "").Inc()
	s.trackAgent(tc, tcpAgent{tc})
	if !s.currentWeb().ln.push(tc) {
		tc.Close()
		s.connState(tc, http.StateClosed)
	}
}

// refused logs, counts and remembers a peer refused before it was trusted.
func (s *Server) refused(c net.Conn, kind, reason string, err error) {
	s.refusedAddr(c.RemoteAddr().String(), kind, reason, err)
}

func (s *Server) refusedAddr(remote, kind, reason string, err error) {
	s.log.Info("peer refused", zap.String("remote_addr", remote), zap.String("kind", kind),
		zap.String("reason", reason), zap.Error(err))
	s.metrics.handshakes.WithLabelValues(kind, "refused", reason).Inc()
	s.events.Add(admin.Event{Time: time.Now(), Kind: "refused " + kind, Reason: reason, Remote: remote})
}

// readProxyHeader reads a PROXY v2 header from connections of trusted load
// balancers.
func (s *Server) readProxyHeader(c net.Conn, lbs []netip.Prefix) (net.Conn, error) {
	if len(lbs) == 0 {
		return c, nil
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil || !trusted(lbs, ap.Addr().Unmap()) {
		return c, nil
	}
	h, err := proxyproto.ReadHeader(c)
	if err != nil {
		return c, fmt.Errorf("read PROXY header from load balancer: %w", err)
	}
	return proxyproto.NewConn(c, h), nil
}

func trusted(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// configForClient chooses the TLS policy by ALPN: the tunnel protocol gets
// the connector policy, everything else the agent policy.
func (s *Server) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if c := s.acmeChallengeConfig(hello); c != nil {
		s.offered.Store(hello.Conn, "acme")
		return c, nil
	}
	if tunnel.HasALPN(hello.SupportedProtos) {
		s.offered.Store(hello.Conn, "connector")
		return s.tunnels, nil
	}
	if slices.Contains(hello.SupportedProtos, EnrollALPN) {
		s.offered.Store(hello.Conn, "enroll")
		return s.enrollTC, nil
	}
	s.offered.Store(hello.Conn, "agent")
	return s.agents, nil
}

// verifyAgent is the VerifyConnection of the agent TLS policy. It runs on
// every handshake, resumed ones included, and fails closed: the chain must
// lead to the trust bundle of the tenant the certificate names, and that
// tenant must be served (its first snapshot has arrived).
func (s *Server) verifyAgent(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return auth.ErrNoCertificate
	}
	name, err := auth.TenantOf(cs.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("%w: %w", auth.ErrMalformedClient, err)
	}
	t := s.tenant(name)
	if t == nil {
		return fmt.Errorf("%w: %q", auth.ErrUnknownTenant, name)
	}
	st := t.state.Load()
	if st == nil {
		return fmt.Errorf("%w: %q has no snapshot yet", auth.ErrUnknownTenant, name)
	}
	_, err = st.verify(cs.PeerCertificates, name, s.cfg.Now())
	return err
}

// refusalReason labels a failed handshake for logs.
func refusalReason(err error) string {
	if r := auth.Reason(err); r != "other" {
		return r
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "handshake_timeout"
	}
	return "tls"
}

// chanListener hands connections that finished their handshake to the
// HTTP server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
