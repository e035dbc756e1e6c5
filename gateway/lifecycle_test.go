package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/tunnel"
)

// blockingHTTP answers every request on a stream with 200 "done", but only
// once release is closed; it signals entered when a request has arrived.
func blockingHTTP(entered chan<- struct{}, release <-chan struct{}) func(tunnel.Stream) {
	return func(st tunnel.Stream) {
		if _, err := tunnel.ReadRequest(st, hang); err != nil {
			return
		}
		if tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusOK}, hang) != nil {
			return
		}
		br := bufio.NewReader(st)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			entered <- struct{}{}
			<-release
			io.WriteString(st, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
		}
	}
}

type getResult struct {
	status int
	body   string
	err    error
}

// asyncGet runs a GET in a goroutine; the test must receive its result.
func asyncGet(c *http.Client, url string) <-chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			ch <- getResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- getResult{status: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hang):
		t.Fatalf("%s: nothing after %v", what, hang)
		panic("unreachable")
	}
}

func TestDeviceConcurrencyLimit(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, func(c *Config) { c.Limits.MaxRequestsPerDevice = 1 }, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1))
	entered, release := make(chan struct{}, 4), make(chan struct{})
	fc.serve(t, blockingHTTP(entered, release))
	pc1 := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-1")))
	pc2 := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-2")))

	first := asyncGet(pc1, g.url("/a"))
	receive(t, entered, "first request at the service")

	status, retry, _ := get(t, pc1, g.url("/b"), "")
	if status != http.StatusTooManyRequests || retry == "" {
		t.Errorf("second concurrent request of pc-1: %d Retry-After %q, want 429 with a hint", status, retry)
	}
	other := asyncGet(pc2, g.url("/c"))
	receive(t, entered, "pc-2's request at the service (another device is not limited)")

	close(release)
	for _, ch := range []<-chan getResult{first, other} {
		if r := receive(t, ch, "blocked request"); r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("blocked request: %d %q %v", r.status, r.body, r.err)
		}
	}
	if status, _, _ := get(t, pc1, g.url("/d"), ""); status != 200 {
		t.Errorf("pc-1 after its request ended: %d, want 200", status)
	}
}

func TestHandshakeTimeouts(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, func(c *Config) { c.Limits.HandshakeTimeout = 300 * time.Millisecond }, acme)

	t.Run("silent TCP client", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", g.addr, hang)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(hang))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("gateway kept a silent connection open: read = %v", err)
		}
		if r := g.refusal(t, c.LocalAddr().String()); r != "handshake_timeout" {
			t.Errorf("reason = %q, want handshake_timeout", r)
		}
	})

	t.Run("connector without hello", func(t *testing.T) {
		sess, err := g.dialTunnel(acme.conn)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		select {
		case <-sess.Done():
		case <-time.After(hang):
			t.Fatal("gateway kept a connector session without hello")
		}
		if ts := g.tenant(t, "acme"); ts.Sessions != 0 {
			t.Errorf("tenant = %+v", ts)
		}
	})

	t.Run("snapshot before hello", func(t *testing.T) {
		sess, err := g.dialTunnel(acme.conn)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		st, err := sess.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tunnel.NewControl(st, hang).Send(tunnel.MsgSnapshot, acme.snapshot("e1", 1))
		select {
		case <-sess.Done():
		case <-time.After(hang):
			t.Fatal("gateway kept a session whose first message is not a hello")
		}
		if ts := g.tenant(t, "acme"); ts.Served || ts.Sessions != 0 {
			t.Errorf("tenant = %+v", ts)
		}
	})
}

func TestShutdownDrains(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, nil, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1))
	entered, release := make(chan struct{}, 1), make(chan struct{})
	fc.serve(t, blockingHTTP(entered, release))
	agent := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-1")))

	inflight := asyncGet(agent, g.url("/slow"))
	receive(t, entered, "request at the service")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		done <- g.s.Shutdown(ctx)
	}()
	// New connections are refused while the old request drains.
	waitFor(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", g.addr, hang)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned before the in-flight request ended: %v", err)
	default:
	}
	close(release)
	if r := receive(t, inflight, "in-flight request"); r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("in-flight request during Shutdown: %d %q %v", r.status, r.body, r.err)
	}
	if err := receive(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	select {
	case <-fc.sess.Done():
	case <-time.After(hang):
		t.Error("connector session still up after Shutdown")
	}
}
