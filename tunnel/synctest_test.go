package tunnel_test

import (
	"net"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sekisho/sekisho/tunnel"
)

// Tests of timing in fake time, in a synctest bubble, over in-memory
// connections.
//
// A limit of the bubble with yamux: a session's receive loop holds a
// stream's lock while it reads a frame's body from the connection, and a
// goroutine waiting for a mutex is not "durably blocked". A stream Read
// that waits for that lock while the frame's bytes wait for fake time to
// pass deadlocks the bubble. Tests here therefore never read streams
// while a paced link is carrying data; bandwidth tests run in real time.

// bubble runs f in a synctest bubble, in a child process that runs only
// the calling (top-level) test.
//
// The child process is needed because yamux keeps its timers in a
// package-level sync.Pool: timers made inside the bubble would later be
// handed to sessions of other tests outside it, which the runtime answers
// with a fatal error ("synctest timer accessed from outside bubble").
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if os.Getenv(bubbleChildEnv) == "1" {
		synctest.Test(t, f)
		return
	}
	// The child's own timeout ends it should this process die first.
	cmd := exec.CommandContext(t.Context(), os.Args[0],
		"-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), bubbleChildEnv+"=1")
	if os.Getenv("GORACE") == "" {
		// The race detector otherwise idles for a second at exit.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("child test:\n%s", out)
	}
}

const bubbleChildEnv = "TUNNEL_TEST_SYNCTEST_CHILD"

// memLink is an in-memory connection that can be frozen: from then on it
// delivers no byte in either direction and reports no error, like a TCP
// connection whose path went black. Close still ends it. Writes may be
// paced to a bandwidth.
type memLink struct {
	frozen chan struct{}
	once   sync.Once
	rate   int // bytes per second; 0: no limit
}

func newMemLink(rate int) (*memLink, net.Conn, net.Conn) {
	l := &memLink{frozen: make(chan struct{}), rate: rate}
	a, b := net.Pipe()
	return l, l.end(a), l.end(b)
}

func (l *memLink) freeze() { l.once.Do(func() { close(l.frozen) }) }

func (l *memLink) end(c net.Conn) net.Conn {
	return &memConn{Conn: c, link: l, closed: make(chan struct{})}
}

type memConn struct {
	net.Conn
	link   *memLink
	closed chan struct{}
	once   sync.Once
}

// stall blocks on a frozen link until the connection is closed.
func (c *memConn) stall() error {
	select {
	case <-c.link.frozen:
		<-c.closed
		return net.ErrClosed
	default:
		return nil
	}
}

func (c *memConn) Read(p []byte) (int, error) {
	if err := c.stall(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	if err := c.stall(); err != nil {
		return 0, err
	}
	if c.link.rate > 0 {
		time.Sleep(time.Duration(len(p)) * time.Second / time.Duration(c.link.rate))
	}
	return c.Conn.Write(p)
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// memPair starts a yamux session pair over a new memLink.
func memPair(t *testing.T, rate int, cfg tunnel.Config) (link *memLink, client, server tunnel.Session) {
	link, a, b := newMemLink(rate)
	client, err := tunnel.NewYamuxClient(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = tunnel.NewYamuxServer(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return link, client, server
}

// TestKeepAliveDetectsDeadPeer freezes the connection under a live
// session and checks that both ends notice within KeepAliveInterval +
// WriteTimeout, with the default settings.
func TestKeepAliveDetectsDeadPeer(t *testing.T) {
	bubble(t, func(t *testing.T) {
		cfg := tunnel.Config{}.WithDefaults()
		link, client, server := memPair(t, 0, tunnel.Config{})
		sessions := map[string]tunnel.Session{"client": client, "server": server}

		// An idle, healthy session lives on: the pings are answered.
		time.Sleep(10*cfg.KeepAliveInterval + cfg.KeepAliveInterval/2)
		synctest.Wait()
		for name, s := range sessions {
			select {
			case <-s.Done():
				t.Fatalf("%s: healthy idle session ended", name)
			default:
			}
		}

		link.freeze()
		frozen := time.Now()
		limit := cfg.KeepAliveInterval + cfg.WriteTimeout
		for name, s := range sessions {
			select {
			case <-s.Done():
			case <-time.After(10 * limit):
				t.Fatalf("%s: frozen session still up after %v", name, 10*limit)
			}
			if d := time.Since(frozen); d > limit {
				t.Errorf("%s: dead peer noticed after %v, want at most %v", name, d, limit)
			} else {
				t.Logf("%s: dead peer noticed after %v (limit %v)", name, d, limit)
			}
		}
	})
}
