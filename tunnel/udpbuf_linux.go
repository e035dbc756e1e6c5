package tunnel

import (
	"net"
	"syscall"
)

// checkUDPBuffers is CheckUDPBuffers; force also tries the privileged
// SO_RCVBUFFORCE and SO_SNDBUFFORCE, which ignore the kernel's limits.
func checkUDPBuffers(conn *net.UDPConn, force bool) string {
	raw, err := conn.SyscallConn()
	if err != nil {
		return "cannot check the UDP socket's buffers: " + err.Error()
	}
	recv, err := growBuffer(raw, conn.SetReadBuffer, syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE, force)
	if err != nil {
		return "cannot check the UDP socket's receive buffer: " + err.Error()
	}
	send, err := growBuffer(raw, conn.SetWriteBuffer, syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE, force)
	if err != nil {
		return "cannot check the UDP socket's send buffer: " + err.Error()
	}
	return udpBufferWarning(recv, send)
}

// growBuffer raises one buffer to UDPBufferSize if it is smaller and
// returns the size it ends with.
func growBuffer(raw syscall.RawConn, set func(int) error, opt, forceOpt int, force bool) (int, error) {
	size, err := bufferSize(raw, opt)
	if err != nil || size >= UDPBufferSize {
		return size, err
	}
	set(UDPBufferSize) // capped at the sysctl limit; what it got is read back
	if size, err = bufferSize(raw, opt); err != nil || size >= UDPBufferSize || !force {
		return size, err
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, forceOpt, UDPBufferSize) // needs CAP_NET_ADMIN
	})
	return bufferSize(raw, opt)
}

// bufferSize reads a socket buffer's size as it was requested: Linux
// doubles the value set (for its bookkeeping) and reports the double.
func bufferSize(raw syscall.RawConn, opt int) (int, error) {
	var size int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		size, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt)
	}); err != nil {
		return 0, err
	}
	return size / 2, serr
}
