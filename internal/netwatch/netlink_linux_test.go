package netwatch

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sekisho/sekisho/internal/netwatch/netwatchtest"
)

// nlmsg is a netlink message of type typ with a body of n bytes.
func nlmsg(typ uint16, n int) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+n)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestKindsOf(t *testing.T) {
	truncated := nlmsg(unix.RTM_NEWADDR, 8)
	binary.NativeEndian.PutUint32(truncated[0:4], 100)
	tests := []struct {
		name string
		b    []byte
		want Kind
	}{
		{"empty", nil, 0},
		{"new address", nlmsg(unix.RTM_NEWADDR, 24), Addr},
		{"deleted route", nlmsg(unix.RTM_DELROUTE, 28), Route},
		{"both, unaligned body", cat(nlmsg(unix.RTM_DELADDR, 5), nlmsg(unix.RTM_NEWROUTE, 3)), Addr | Route},
		{"a link message is not watched", nlmsg(unix.RTM_NEWLINK, 16), 0},
		{"short header", []byte{1, 2, 3}, Overflow},
		{"length past the end", truncated, Overflow},
		{"route, then garbage", cat(nlmsg(unix.RTM_NEWROUTE, 4), []byte{0, 0}), Route | Overflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kindsOf(tt.b); got != tt.want {
				t.Fatalf("kindsOf = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzKindsOf(f *testing.F) {
	f.Add(nlmsg(unix.RTM_NEWADDR, 24))
	f.Add(cat(nlmsg(unix.RTM_DELADDR, 5), nlmsg(unix.RTM_NEWROUTE, 3)))
	f.Add([]byte{16, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		kindsOf(b) // must not panic or loop
	})
}

// TestNetlinkSeesAddressChange: in a namespace of its own, adding and
// removing an address on a link are each reported as an address
// change.
func TestNetlinkSeesAddressChange(t *testing.T) {
	ns := netwatchtest.New(t)
	// Down, so that no IPv6 link-local address or route turns up on its
	// own and passes for the change the test makes.
	ns.IP("link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
	var w *Watcher
	if err := ns.Do(func() (err error) {
		w, err = New(Config{Debounce: 20 * time.Millisecond})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.src.(*netlinkSource); !ok {
		t.Fatalf("source %T, want netlink", w.src)
	}
	reports := make(chan Change, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(c Change) { reports <- c }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	for _, op := range []string{"add", "del"} {
		ns.IP("addr", op, "192.0.2.1/24", "dev", "probe0")
		select {
		case c := <-reports:
			if c.Kinds&Addr == 0 || c.Count < 1 {
				t.Fatalf("address %s: report %+v, want an address change", op, c)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("address %s: no report", op)
		}
	}
}
