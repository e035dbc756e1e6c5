//go:build unix

package netwatch

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestUnreachable(t *testing.T) {
	sendErr := func(e syscall.Errno) error {
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmsg", e)}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{sendErr(syscall.ENETUNREACH), true},
		{sendErr(syscall.EADDRNOTAVAIL), true},
		{sendErr(syscall.EHOSTUNREACH), true},
		{sendErr(syscall.EMSGSIZE), false}, // quic-go's path MTU discovery
		{sendErr(syscall.EBADF), false},
		{net.ErrClosed, false},
		{errors.New("network is unreachable"), false}, // by message: no
		{nil, false},
	} {
		if got := Unreachable(tc.err); got != tc.want {
			t.Errorf("Unreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
