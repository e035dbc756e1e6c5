package proxyproto

import (
	"net"
	"time"
)

var _ net.Conn = (*Conn)(nil)

// Conn is a connection that reports the endpoints named by its PROXY header.
type Conn struct {
	conn   net.Conn
	remote net.Addr // nil: the connection's own
	local  net.Addr // nil: the connection's own
}

// NewConn wraps c, whose PROXY header h has already been read. RemoteAddr and
// LocalAddr return h's Source and Destination (as *net.TCPAddr) when h is a
// Proxy header that names them, and c's own addresses otherwise (h nil, Local
// or UNSPEC). Everything else is c's.
func NewConn(c net.Conn, h *Header) *Conn {
	pc := &Conn{conn: c}
	if h != nil && h.Command == Proxy {
		if h.Source.IsValid() {
			pc.remote = net.TCPAddrFromAddrPort(h.Source)
		}
		if h.Destination.IsValid() {
			pc.local = net.TCPAddrFromAddrPort(h.Destination)
		}
	}
	return pc
}

// NetConn returns the wrapped connection, for what Conn does not forward
// (CloseWrite on a *net.TCPConn, or its splice fast paths in io.Copy).
func (c *Conn) NetConn() net.Conn { return c.conn }

// RemoteAddr returns the header's source address, or else the connection's.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.conn.RemoteAddr()
}

// LocalAddr returns the header's destination address, or else the
// connection's.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.conn.LocalAddr()
}

// Read reads from the connection.
func (c *Conn) Read(b []byte) (int, error) { return c.conn.Read(b) }

// Write writes to the connection.
func (c *Conn) Write(b []byte) (int, error) { return c.conn.Write(b) }

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }

// SetDeadline sets the connection's read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
