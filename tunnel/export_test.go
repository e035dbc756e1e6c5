package tunnel

import (
	"net"

	"github.com/quic-go/quic-go"
)

// QUICConfigOf exposes the quic-go configuration a Config makes.
func QUICConfigOf(c Config) *quic.Config { return c.quic() }

// CheckUDPBuffersNoForce is CheckUDPBuffers without the privileged
// SO_RCVBUFFORCE/SO_SNDBUFFORCE attempt: what an unprivileged process gets.
func CheckUDPBuffersNoForce(conn *net.UDPConn) string { return checkUDPBuffers(conn, false) }
