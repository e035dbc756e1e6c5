package netwatch

import (
	"errors"
	"syscall"

	"golang.org/x/sys/windows"
)

// Unreachable reports whether err, from a send, means that the path is
// gone: no route to the destination any more, the source address removed,
// the interface down. Such a failure is the network changing under the
// sender, not a fault of the socket.
func Unreachable(err error) bool {
	for _, e := range []syscall.Errno{windows.WSAENETUNREACH, windows.WSAEHOSTUNREACH, windows.WSAEADDRNOTAVAIL, windows.WSAENETDOWN, windows.WSAEHOSTDOWN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
