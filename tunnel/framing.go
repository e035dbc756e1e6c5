package tunnel

import (
	"encoding/binary"
	"net"
)

// yamux frame header layout (yamux spec): version:u8 type:u8 flags:u16
// stream:u32 length:u32.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// frameConn sits between yamux and the TLS connection. yamux writes each
// data frame as two writes, its 12-byte header and then its body; over TLS
// that makes a record and a system call for the header alone. frameConn
// holds a data-frame header back and sends it with the body that follows,
// in one write. Only yamux's send loop writes, so no lock is needed.
type frameConn struct {
	net.Conn
	hdr     [yamuxHeaderSize]byte
	pending int // body length announced by the held header; 0: none held
	buf     []byte
}

func (c *frameConn) Write(p []byte) (int, error) {
	if c.pending > 0 {
		want := c.pending
		c.pending = 0
		if len(p) == want {
			c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
			n, err := c.Conn.Write(c.buf)
			return max(n-yamuxHeaderSize, 0), err
		}
		// Not the body we expected: keep the bytes in order anyway.
		if _, err := c.Conn.Write(c.hdr[:]); err != nil {
			return 0, err
		}
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData {
		if n := binary.BigEndian.Uint32(p[8:]); n > 0 && n <= 1<<30 {
			copy(c.hdr[:], p)
			c.pending = int(n)
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}
