package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/quic-go/quic-go"
)

// DialQUIC connects to a gateway's QUIC tunnel port and starts the client
// end of a QUIC session, on which OpenControl and the rest work as on a
// yamux session. The handshake offers only the tunnel ALPN and TLS 1.3,
// never 0-RTT; it is bounded by dc.Timeout and by
// dc.Session.QUICHandshakeTimeout. dc.Dialer is not used.
func DialQUIC(ctx context.Context, dc DialConfig) (Session, error) {
	ctx, cancel, err := dc.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	raddr, host, err := resolveUDP(ctx, dc.Address)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", dc.Address, err)
	}
	tr := dc.QUICTransport
	var release func() // frees a socket of the session's own
	if tr == nil {
		if tr, release, err = ownTransport(raddr); err != nil {
			return nil, fmt.Errorf("dial gateway %s: %w", dc.Address, err)
		}
	}
	fail := func(err error) (Session, error) {
		if release != nil {
			release()
		}
		return nil, err
	}
	conf := dc.TLS.Clone()
	conf.NextProtos = []string{ALPN}
	if conf.ServerName == "" {
		conf.ServerName = host
	}
	conn, err := tr.Dial(ctx, raddr, conf, dc.Session.quic())
	if err != nil {
		return fail(fmt.Errorf("quic handshake with gateway %s: %w", dc.Address, err))
	}
	if p := conn.ConnectionState().TLS.NegotiatedProtocol; p != ALPN {
		conn.CloseWithError(quicCodeClosed, "")
		return fail(fmt.Errorf("gateway %s did not accept the tunnel protocol (ALPN %q)", dc.Address, p))
	}
	return newQUICSession(conn, release), nil
}

// resolveUDP resolves host:port to one address, the first IPv4 one if
// there is any (QUIC does not race address families as TCP dialing does).
func resolveUDP(ctx context.Context, address string) (*net.UDPAddr, string, error) {
	host, service, err := net.SplitHostPort(address)
	if err != nil {
		return nil, "", err
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "udp", service)
	if err != nil {
		return nil, "", err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, "", err
		}
		ip = ips[0]
		for _, a := range ips {
			if a.Unmap().Is4() {
				ip = a
				break
			}
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(port))), host, nil
}

// ownTransport makes a UDP socket for one session, bound (like a TCP
// connection) to the local address the kernel routes raddr from, so that
// the session's LocalAddr names it. release closes it.
func ownTransport(raddr *net.UDPAddr) (*quic.Transport, func(), error) {
	probe, err := net.DialUDP("udp", nil, raddr) // sends nothing
	if err != nil {
		return nil, nil, err
	}
	local := probe.LocalAddr().(*net.UDPAddr)
	probe.Close()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		return nil, nil, err
	}
	tr := &quic.Transport{Conn: conn}
	return tr, func() { tr.Close(); conn.Close() }, nil
}

// QUICListener accepts connectors' QUIC tunnels on a UDP port of its own.
type QUICListener struct {
	tr   *quic.Transport
	ln   *quic.Listener
	conn net.PacketConn

	mu       sync.Mutex
	sessions map[*quicSession]struct{} // accepted and not ended
	closed   bool

	closeOnce sync.Once
	closeErr  error
}

// ListenQUIC serves QUIC tunnels on conn, which it takes over: Close
// closes it. The listener speaks only the tunnel ALPN and TLS 1.3, with
// no session tickets (so no resumption and no 0-RTT): tlsConf is cloned
// with those settings, and so is every configuration its
// GetConfigForClient returns. Its VerifyConnection runs on every
// handshake as usual; Accept returns only sessions whose handshake has
// completed. On error, conn is left open.
func ListenQUIC(conn net.PacketConn, tlsConf *tls.Config, cfg Config) (*QUICListener, error) {
	if tlsConf == nil {
		return nil, errors.New("listen quic tunnel: no TLS configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: conn}
	ln, err := tr.Listen(tunnelServerTLS(tlsConf), cfg.quic())
	if err != nil {
		tr.Close()
		return nil, fmt.Errorf("listen quic tunnel on %s: %w", conn.LocalAddr(), err)
	}
	return &QUICListener{tr: tr, ln: ln, conn: conn, sessions: map[*quicSession]struct{}{}}, nil
}

// tunnelServerTLS applies the tunnel's TLS policy to a server
// configuration and to those its GetConfigForClient returns.
func tunnelServerTLS(c *tls.Config) *tls.Config {
	c = tunnelServerTLSOnly(c)
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			r, err := get(hello)
			if r != nil {
				r = tunnelServerTLSOnly(r)
			}
			return r, err
		}
	}
	return c
}

func tunnelServerTLSOnly(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{ALPN}
	c.MinVersion = tls.VersionTLS13
	c.SessionTicketsDisabled = true
	return c
}

// Accept waits for a connector's session whose handshake has completed.
// After Close it returns an error that matches net.ErrClosed.
func (l *QUICListener) Accept(ctx context.Context) (Session, error) {
	for {
		conn, err := l.ln.Accept(ctx)
		if err != nil {
			return nil, fmt.Errorf("accept quic tunnel: %w", err)
		}
		if conn.ConnectionState().TLS.NegotiatedProtocol != ALPN {
			conn.CloseWithError(quicCodeClosed, "")
			continue
		}
		s := newQUICSession(conn, nil)
		if !l.track(s) {
			s.Close()
			return nil, fmt.Errorf("accept quic tunnel: %w", net.ErrClosed)
		}
		return s, nil
	}
}

// track remembers s until it ends, so that Close can end it.
func (l *QUICListener) track(s *quicSession) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.sessions[s] = struct{}{}
	context.AfterFunc(s.conn.Context(), func() {
		l.mu.Lock()
		delete(l.sessions, s)
		l.mu.Unlock()
	})
	return true
}

// Addr is the local UDP address.
func (l *QUICListener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, ends every session accepted from l (the peers
// get a CONNECTION_CLOSE) and closes the UDP socket. It is idempotent.
func (l *QUICListener) Close() error {
	l.closeOnce.Do(func() {
		l.ln.Close()
		// Handshakes done but never accepted: close them too.
		for {
			conn, err := l.ln.Accept(context.Background())
			if err != nil {
				break
			}
			conn.CloseWithError(quicCodeClosed, "")
		}
		l.mu.Lock()
		l.closed = true
		live := make([]*quicSession, 0, len(l.sessions))
		for s := range l.sessions {
			live = append(live, s)
		}
		l.mu.Unlock()
		var wg sync.WaitGroup
		for _, s := range live {
			wg.Go(func() { s.Close() })
		}
		wg.Wait()
		l.tr.Close()
		l.closeErr = l.conn.Close()
	})
	return l.closeErr
}
