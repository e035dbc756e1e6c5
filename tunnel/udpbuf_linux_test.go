package tunnel_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sekisho/sekisho/tunnel"
)

// sysctlInt reads an integer from /proc/sys.
func sysctlInt(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		t.Skipf("cannot read %s: %v", name, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

func udpSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// bufferSizes returns what the kernel reports for c's buffers, halved
// (Linux reports twice the size asked for).
func bufferSizes(t *testing.T, c *net.UDPConn) (recv, send int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		recv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		send, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return recv / 2, send / 2
}

// TestCheckUDPBuffersCapped: without privilege, the kernel caps the
// buffers at net.core.rmem_max and wmem_max, and the check says which
// sysctls to raise. (Tests may run as root, where SO_RCVBUFFORCE would
// pass the cap: this is the unprivileged path.)
func TestCheckUDPBuffersCapped(t *testing.T) {
	rmax, wmax := sysctlInt(t, "net.core.rmem_max"), sysctlInt(t, "net.core.wmem_max")
	if rmax >= tunnel.UDPBufferSize && wmax >= tunnel.UDPBufferSize {
		t.Skipf("this kernel allows %d/%d bytes: nothing is capped", rmax, wmax)
	}
	c := udpSocket(t)
	w := tunnel.CheckUDPBuffersNoForce(c)
	for _, want := range []string{"net.core.rmem_max", "net.core.wmem_max", "sysctl -w", "KiB"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q does not say %q", w, want)
		}
	}
	t.Log(w)
	// It asked for as much as the kernel allows.
	if recv, send := bufferSizes(t, c); recv != min(rmax, tunnel.UDPBufferSize) || send != min(wmax, tunnel.UDPBufferSize) {
		t.Errorf("buffers %d/%d after the check, want %d/%d", recv, send, min(rmax, tunnel.UDPBufferSize), min(wmax, tunnel.UDPBufferSize))
	}
	// Asking again changes nothing.
	if w2 := tunnel.CheckUDPBuffersNoForce(c); w2 != w {
		t.Errorf("second check: %q", w2)
	}
}

// TestCheckUDPBuffers: with the privileged attempt (which works as root
// with CAP_NET_ADMIN), the warning is there exactly when a buffer stays
// below what QUIC wants.
func TestCheckUDPBuffers(t *testing.T) {
	c := udpSocket(t)
	w := tunnel.CheckUDPBuffers(c)
	recv, send := bufferSizes(t, c)
	short := recv < tunnel.UDPBufferSize || send < tunnel.UDPBufferSize
	if (w != "") != short {
		t.Errorf("buffers %d/%d, warning %q", recv, send, w)
	}
	t.Logf("buffers %d/%d KiB, warning %q", recv>>10, send>>10, w)
	// A socket already large enough is left alone.
	if !short {
		if w := tunnel.CheckUDPBuffersNoForce(c); w != "" {
			t.Errorf("a large enough socket got %q", w)
		}
	}
}
