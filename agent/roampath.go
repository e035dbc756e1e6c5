package agent

import (
	"net"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/sekisho/sekisho/internal/netwatch"
)

// quicPath is one network path of a QUIC connection: a UDP socket bound
// to one of the PC's addresses, and the quic-go transport on it.
type quicPath struct {
	tr *quic.Transport
	pc *pathConn
}

func (p quicPath) local() *net.UDPAddr { return p.pc.LocalAddr().(*net.UDPAddr) }

func (p quicPath) close() {
	p.tr.Close() // leaves the socket open: it was handed in
	p.pc.Close()
}

// pathConn is the UDP socket of one path. Once armed (its connection is
// up), a send that fails because the path is gone — no route any more,
// the source address removed (netwatch.Unreachable) — is reported as sent:
// QUIC counts the packet lost and resends it on the path the roamer moves
// to, where quic-go would otherwise close the connection at the first such
// error. Each such failure hints the roamer to look at the routes.
//
// It keeps *net.UDPConn's methods, so that quic-go still reads in batches
// and sends with GSO and ECN.
type pathConn struct {
	*net.UDPConn
	armed atomic.Bool
	hint  func()
}

// WriteMsgUDP is how quic-go sends where it can (quic.OOBCapablePacketConn).
func (c *pathConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	n, oobn, err = c.UDPConn.WriteMsgUDP(b, oob, addr)
	if c.gone(err) {
		return len(b), len(oob), nil
	}
	return n, oobn, err
}

// WriteTo is how quic-go sends elsewhere (Windows).
func (c *pathConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.UDPConn.WriteTo(b, addr)
	if c.gone(err) {
		return len(b), nil
	}
	return n, err
}

func (c *pathConn) gone(err error) bool {
	if err == nil || !c.armed.Load() || !netwatch.Unreachable(err) {
		return false
	}
	c.hint()
	return true
}

// routeSource returns the address the PC would send from toward remote
// now: that of a UDP socket connected to it (connecting a UDP socket sends
// nothing; the kernel picks the route and its source address).
func routeSource(remote *net.UDPAddr) (*net.UDPAddr, error) {
	c, err := net.DialUDP("udp", nil, remote)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	la := c.LocalAddr().(*net.UDPAddr)
	return &net.UDPAddr{IP: la.IP, Zone: la.Zone}, nil
}

// sameHost reports whether a and b are the same address, ports aside.
func sameHost(a, b *net.UDPAddr) bool { return a.IP.Equal(b.IP) && a.Zone == b.Zone }

// nudgeStreamType is a reserved HTTP/3 stream type (RFC 9114, section
// 6.2.3, 0x1f * N + 0x21): the gateway reads it and ignores the stream.
const nudgeStreamType = 0x21

// nudge makes the connection send a non-probing packet on its new path at
// once: a unidirectional stream of a reserved type. The gateway moves to
// a path when a non-probing packet arrives on it (RFC 9000, section 9.3);
// a connection that only receives, as in a download, might otherwise say
// nothing until its next keepalive while the gateway sends into the old
// path.
func nudge(conn *quic.Conn) error {
	str, err := conn.OpenUniStream()
	if err != nil {
		return err
	}
	if _, err := str.Write(quicvarint.Append(nil, nudgeStreamType)); err != nil {
		str.CancelWrite(0x100) // H3_NO_ERROR
		return err
	}
	return str.Close()
}
