package tunnel

import (
	"fmt"
	"net"
	"strings"
)

// UDPBufferSize is the kernel socket buffer QUIC wants for each direction
// of its UDP socket (quic-go asks for the same). Less costs throughput:
// bursts that do not fit are dropped and sent again.
const UDPBufferSize = 7 << 20

// CheckUDPBuffers raises conn's kernel receive and send buffers to
// UDPBufferSize, as quic-go does when a quic.Transport starts on a socket
// (where the process may, as root, override the kernel's limits), and
// returns a warning naming the sysctls to raise when either stays below;
// "" when both are large enough. It asks for nothing but UDPBufferSize,
// and only for a buffer that is smaller, so it may be called before or
// after the socket is handed to ListenQUIC or a quic.Transport. The roles log the warning once; this package does not
// log. On systems other than Linux it checks nothing and returns "".
func CheckUDPBuffers(conn *net.UDPConn) (warning string) {
	return checkUDPBuffers(conn, true)
}

// udpBufferWarning words the warning for the sizes obtained, in bytes.
func udpBufferWarning(recv, send int) string {
	var short []string
	if recv < UDPBufferSize {
		short = append(short, fmt.Sprintf("receive buffer is %d KiB", recv>>10))
	}
	if send < UDPBufferSize {
		short = append(short, fmt.Sprintf("send buffer is %d KiB", send>>10))
	}
	if len(short) == 0 {
		return ""
	}
	return fmt.Sprintf("QUIC throughput is limited: the UDP socket's %s, below the %d KiB QUIC wants; "+
		"the kernel caps them at net.core.rmem_max and net.core.wmem_max: raise both, "+
		"e.g. sysctl -w net.core.rmem_max=%d net.core.wmem_max=%d (in a container, on the host)",
		strings.Join(short, " and its "), UDPBufferSize>>10, UDPBufferSize, UDPBufferSize)
}
