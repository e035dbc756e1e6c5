package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/tunnel"
)

// liveConn is a live agent connection of either transport, kept so that
// pushed state (a CA dropped from the bundle, a revocation) takes effect on
// connections already open, not only on new handshakes.
type liveConn interface {
	peer() []*x509.Certificate
	close()
	remote() string
	transport() string
}

type tcpAgent struct{ c *tls.Conn }

func (a tcpAgent) peer() []*x509.Certificate { return a.c.ConnectionState().PeerCertificates }
func (a tcpAgent) close()                    { a.c.Close() }
func (a tcpAgent) remote() string            { return a.c.RemoteAddr().String() }
func (a tcpAgent) transport() string         { return tunnel.TransportTCP }

type quicAgent struct{ c *quic.Conn }

func (a quicAgent) peer() []*x509.Certificate { return a.c.ConnectionState().TLS.PeerCertificates }
func (a quicAgent) close()                    { a.c.CloseWithError(0x100, "refused") } // H3_NO_ERROR is 0x100
func (a quicAgent) remote() string            { return a.c.RemoteAddr().String() }
func (a quicAgent) transport() string         { return tunnel.TransportQUIC }

// trackAgent registers an agent connection that finished its handshake,
// keyed by the connection itself (a *tls.Conn or a *quic.Conn).
func (s *Server) trackAgent(key any, c liveConn) {
	chain := c.peer()
	if len(chain) == 0 {
		return
	}
	name, err := auth.TenantOf(chain[0])
	if err != nil {
		return // verifyAgent refused it already; cannot happen
	}
	t := s.tenant(name)
	if t == nil {
		return
	}
	t.mu.Lock()
	t.conns[key] = c
	t.mu.Unlock()
}

// forgetAgent drops a connection from its tenant's list.
func (s *Server) forgetAgent(key any) {
	for _, t := range s.tenantList() {
		t.mu.Lock()
		_, found := t.conns[key]
		delete(t.conns, key)
		t.mu.Unlock()
		if found {
			return
		}
	}
}

// connState is the HTTP server's ConnState hook: it forgets connections
// as they close. A hijacked connection (an HTTP/1.1 CONNECT) stays known
// until its handler forgets it, so that pushed state still reaches it.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed {
		s.forgetAgent(c)
	}
}

// reverify checks every live agent connection of t against the tenant's
// current state and closes those that no longer pass.
func (s *Server) reverify(t *tenant) {
	st := t.state.Load()
	t.mu.Lock()
	conns := make([]liveConn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	closed := 0
	now := s.cfg.Now()
	for _, c := range conns {
		chain := c.peer()
		if _, err := st.verify(chain, t.name, now); err != nil {
			p, _ := auth.PrincipalOf(chain[0])
			s.log.Info("agent connection closed", zap.String("tenant", t.name), zap.String("device_id", p.DeviceID),
				zap.String("remote_addr", c.remote()), zap.String("transport", c.transport()),
				zap.String("reason", auth.Reason(err)), zap.Error(err))
			c.close()
			closed++
		}
	}
	if closed > 0 {
		s.log.Info("pushed state applied to live connections", zap.String("tenant", t.name),
			zap.Int("checked", len(conns)), zap.Int("closed", closed))
	}
}
