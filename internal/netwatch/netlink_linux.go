package netwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// netlinkGroups are the rtnetlink multicast groups watched: addresses and
// routes of both families. Links are left out: a link going down takes
// its routes with it, and link statistics would be noise.
const netlinkGroups = unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE

// newSource listens to rtnetlink, or polls when the socket cannot be
// opened (a sandbox that forbids it).
func newSource(cfg Config) (source, error) {
	s, err := openNetlink()
	if err != nil {
		cfg.Logger.Warn("netlink unavailable, polling the interface addresses", zap.Duration("every", cfg.Poll), zap.Error(err))
		return newPoller(cfg.Poll), nil
	}
	return s, nil
}

// netlinkSource reads rtnetlink notifications from a non-blocking socket
// wrapped in an *os.File, so that the runtime's poller waits for it and
// close unblocks a pending read.
type netlinkSource struct {
	f *os.File
}

func openNetlink() (*netlinkSource, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: netlinkGroups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlinkSource{f: os.NewFile(uintptr(fd), "rtnetlink")}, nil
}

func (s *netlinkSource) run(ctx context.Context, note func(Kind)) error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("netlink read: %w", err)
		case errors.Is(rerr, unix.ENOBUFS):
			note(Overflow) // the kernel dropped notifications: the socket buffer filled up
			continue
		case rerr != nil:
			return fmt.Errorf("netlink read: %w", rerr)
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // only the kernel speaks for the network
		}
		if k := kindsOf(buf[:n]); k != 0 {
			note(k)
		}
	}
}

// kindsOf returns the kinds of the notifications in one datagram: a run
// of netlink messages, each a header (length, type, flags, sequence,
// port) and a body, aligned to 4 bytes.
func kindsOf(b []byte) Kind {
	var k Kind
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return k | Overflow // unreadable: assume anything changed
		}
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < unix.NLMSG_HDRLEN || n > len(b) {
			return k | Overflow
		}
		switch binary.NativeEndian.Uint16(b[4:6]) {
		case unix.RTM_NEWADDR, unix.RTM_DELADDR:
			k |= Addr
		case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
			k |= Route
		}
		b = b[min((n+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return k
}

func (s *netlinkSource) close() error { return s.f.Close() }
