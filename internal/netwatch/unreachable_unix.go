//go:build unix

package netwatch

import (
	"errors"
	"syscall"
)

// Unreachable reports whether err, from a send, means that the path is
// gone: no route to the destination any more, the source address removed,
// the interface down. Such a failure is the network changing under the
// sender, not a fault of the socket.
func Unreachable(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.EADDRNOTAVAIL, syscall.ENETDOWN, syscall.EHOSTDOWN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
