package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HTTP/3 to the gateways. The gateway serves agents HTTP/3 on its UDP
// port with the same TLS policy as on TCP; the agent dials the same host
// and port as the gateway's TCP address, over UDP.
const (
	// quicKeepAlive keeps a connection, and the NAT binding in front of
	// it, alive while a request waits on a quiet core; the gateway still
	// closes connections idle at the HTTP level (its idle_timeout).
	quicKeepAlive = 15 * time.Second
	// quicIdleTimeout is how long a connection survives without hearing
	// from the gateway: a PC that loses its network for longer than this
	// dials again instead of moving the connection.
	quicIdleTimeout = 60 * time.Second
)

// newH3 returns the HTTP/3 transport of c: its connections are dialed by
// dialQUIC and followed by c.roam. No 0-RTT: a replayed request is never
// worth the round trip it saves.
func (c *Client) newH3(cfg Config) *http3.Transport {
	return &http3.Transport{
		Dial: c.dialQUIC,
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: cfg.DialTimeout,
			MaxIdleTimeout:       quicIdleTimeout,
			KeepAlivePeriod:      quicKeepAlive,
		},
	}
}

// quicDialError is a QUIC connection that could not be opened to any
// gateway: nothing of the request was sent.
type quicDialError struct{ err error }

func (e *quicDialError) Error() string { return "quic: " + e.err.Error() }
func (e *quicDialError) Unwrap() error { return e.err }

// dialQUIC is the HTTP/3 transport's dialer. Every request goes to the
// gateways, whatever its URL's host, so addr and the TLS config made from
// it are ignored: the gateways are tried in order from the last one that
// worked, each with its own TLS config and the device certificate. In
// auto mode only the last one that worked is tried, within
// autoQUICTimeout: TCP is there to fall back on, with its own failover.
func (c *Client) dialQUIC(ctx context.Context, _ string, _ *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	var conn *quic.Conn
	dial := func(ctx context.Context, gw *gateway) (err error) {
		conn, err = c.dialQUICOne(ctx, gw, qc)
		return err
	}
	n := len(c.dialer.gateways)
	if c.auto != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, autoQUICTimeout)
		defer cancel()
		n = 1
	}
	if _, err := c.dialer.try(ctx, n, dial); err != nil {
		return nil, &quicDialError{err}
	}
	return conn, nil
}

// dialQUICOne opens a QUIC connection to gw from a socket of its own,
// bound to the address the PC sends from toward gw now, and hands the
// connection to the roamer.
func (c *Client) dialQUICOne(ctx context.Context, gw *gateway, qc *quic.Config) (*quic.Conn, error) {
	remote, err := resolveUDP(ctx, gw.address)
	if err != nil {
		return nil, err
	}
	pc, err := c.roam.listen(remote)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: pc}
	conf := c.dialer.tlsConfig(gw, dialOptions{
		protos:   []string{http3.NextProtoH3},
		cert:     c.Certificate,
		sessions: c.quicSessions.Load(),
	})
	conn, err := tr.Dial(ctx, remote, conf, qc) // Dial, not DialEarly: no 0-RTT
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("quic handshake: %w", err)
	}
	c.roam.track(conn, gw.address, remote, quicPath{tr: tr, pc: pc})
	return conn, nil
}

// resolveUDP resolves a gateway's host:port to its first address.
func resolveUDP(ctx context.Context, address string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, errors.New("no address for " + host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(p))), nil
}
