package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
)

// agentConn is a live agent connection, kept so that pushed state (a CA
// dropped from the bundle, later a revocation) takes effect on connections
// already open, not only on new handshakes.
type agentConn struct {
	conn   *tls.Conn
	tenant *tenant
}

// trackAgent registers an agent connection that finished its handshake.
func (s *Server) trackAgent(tc *tls.Conn) {
	cs := tc.ConnectionState()
	name, err := auth.TenantOf(cs.PeerCertificates[0])
	if err != nil {
		return // verifyAgent refused it already; cannot happen
	}
	t := s.tenant(name)
	if t == nil {
		return
	}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
}

// forgetAgent drops a connection from its tenant's list.
func (s *Server) forgetAgent(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	for _, t := range s.tenantList() {
		t.mu.Lock()
		_, found := t.conns[tc]
		delete(t.conns, tc)
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
	var roots *x509.CertPool // nil: no bundle any more, every agent fails
	if st != nil {
		roots = st.roots
	}
	t.mu.Lock()
	conns := make([]*tls.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	closed := 0
	now := s.cfg.Now()
	for _, c := range conns {
		chain := c.ConnectionState().PeerCertificates
		if _, err := auth.VerifyAgent(chain, t.name, roots, now); err != nil {
			p, _ := auth.PrincipalOf(chain[0])
			s.log.Info("agent connection closed", zap.String("tenant", t.name), zap.String("device_id", p.DeviceID),
				zap.String("remote_addr", c.RemoteAddr().String()), zap.String("reason", auth.Reason(err)), zap.Error(err))
			c.Close()
			closed++
		}
	}
	if closed > 0 {
		s.log.Info("pushed state applied to live connections", zap.String("tenant", t.name),
			zap.Int("checked", len(conns)), zap.Int("closed", closed))
	}
}
