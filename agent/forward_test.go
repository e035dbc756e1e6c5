package agent

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/config"
)

// echoRoundTrip sends payload on conn, half-closes it and reads the echo
// to its end: the echo server only ends after seeing the half-close, so a
// full answer proves that the half-close went through and that the other
// direction went on after it.
func echoRoundTrip(t *testing.T, conn net.Conn, payload []byte) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(hang))
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		if _, werr = conn.Write(payload); werr == nil {
			werr = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
	})
	got, err := io.ReadAll(conn)
	wg.Wait()
	if err != nil || werr != nil {
		t.Fatalf("read: %v, write: %v", err, werr)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes, want %d", len(got), len(payload))
	}
}

func TestForwardRoundTrip(t *testing.T) {
	g := newFakeGateway(t)
	a := g.newAgent(t, func(c *Config) { c.Forwards = []Forward{{Listen: "127.0.0.1:0", Service: "echo"}} })
	runAgent(t, a)
	for _, size := range []int{1, 1 << 20} {
		conn, err := net.Dial("tcp", a.Status().Listeners[0])
		if err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, conn, bytes.Repeat([]byte("s"), size))
		conn.Close()
	}
	if c := g.seenConnects(); len(c) != 2 || c[0].target != "echo:0" {
		t.Fatalf("gateway saw %+v, want 2 CONNECT echo:0", c)
	}
}

func TestForwardRefusedService(t *testing.T) {
	g := newFakeGateway(t)
	a := g.newAgent(t, func(c *Config) { c.Forwards = []Forward{{Listen: "127.0.0.1:0", Service: "other"}} })
	runAgent(t, a)
	conn, err := net.Dial("tcp", a.Status().Listeners[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hang))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("read = %d, %v; want the connection closed", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestForwardLimit(t *testing.T) {
	g := newFakeGateway(t)
	a := g.newAgent(t, func(c *Config) {
		c.Forwards = []Forward{{Listen: "127.0.0.1:0", Service: "echo"}}
		c.MaxConns = 1
	})
	runAgent(t, a)
	addr := a.Status().Listeners[0]
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(hang))
	first.Write([]byte("x")) // relayed: the only slot is taken
	if _, err := io.ReadFull(first, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(hang))
	if n, err := second.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("second connection: read = %d, %v; want it closed", n, err)
	}
	if s := a.Status(); s.ActiveConns != 1 {
		t.Fatalf("active conns = %d, want 1", s.ActiveConns)
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		allowRemote bool
		ok          bool
	}{
		{"127.0.0.1:0", false, true},
		{"localhost:0", false, true},
		{"[::1]:0", false, true},
		{"0.0.0.0:0", false, false},
		{":0", false, false},
		{"[::]:0", false, false},
		{"192.0.2.1:0", false, false},
		{"pc.example:0", false, false},
		{"0.0.0.0:0", true, true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			cfg := Config{Gateways: []GatewayConfig{{Address: "gw.example:443"}},
				Forwards: []Forward{{Listen: tc.addr, Service: "echo", AllowRemote: tc.allowRemote}}}
			err := cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate = %v", err)
			}
			if !tc.ok && (!errors.Is(err, errNotLoopback) || !slices.Contains(config.FieldPaths(err), "forwards[0].listen")) {
				t.Fatalf("Validate = %v, want forwards[0].listen: not a loopback address", err)
			}
			if tc.ok {
				return
			}
			if ln, err := listenLocal(tc.addr, false); !errors.Is(err, errNotLoopback) {
				if ln != nil {
					ln.Close()
				}
				t.Fatalf("listenLocal = %v, want refused", err)
			}
		})
	}
	ln, err := listenLocal("0.0.0.0:0", true)
	if err != nil {
		t.Fatalf("allow_remote: %v", err)
	}
	ln.Close()
}
