package tunnel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// transport is one row of the transport suite: how to make a connected
// client (connector) and server (gateway) session pair.
type transport struct {
	name string // as Session.Transport reports it
	pair func(testing.TB, tunnel.Config) (client, server tunnel.Session)
}

// transports lists every transport the suite runs over.
var transports = []transport{
	{tunnel.TransportTCP, tunneltest.Pair},
	{tunnel.TransportQUIC, tunneltest.QUICPair},
}

// behaviour is one row of the suite: what every transport must do.
type behaviour struct {
	name string
	run  func(t *testing.T, tr transport)
}

var behaviours = []behaviour{
	{"open and accept", testOpenAccept},
	{"large transfer", testLargeTransfer},
	{"concurrent streams", testConcurrentStreams},
	{"half close", testHalfClose},
	{"close unblocks read", testCloseUnblocksRead},
	{"close stops peer writes", testCloseStopsPeerWrites},
	{"read deadline", testReadDeadline},
	{"peer closes session", testPeerClosesSession},
	{"close session", testCloseSession},
	{"context", testContext},
	{"relay ok", testRelayOK},
	{"relay refused", testRelayRefused},
	{"relay bad header", testRelayBadHeader},
	{"relay reply timeout", testRelayReplyTimeout},
	{"relay header timeout", testRelayHeaderTimeout},
}

func TestSession(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) { b.run(t, tr) })
			}
		})
	}
}

func testOpenAccept(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	for _, s := range []tunnel.Session{client, server} {
		if got := s.Transport(); got != tr.name {
			t.Errorf("Transport() = %q, want %q", got, tr.name)
		}
	}
	if client.LocalAddr().String() != server.RemoteAddr().String() || client.RemoteAddr().String() != server.LocalAddr().String() {
		t.Errorf("addresses: client %v->%v, server %v->%v",
			client.LocalAddr(), client.RemoteAddr(), server.LocalAddr(), server.RemoteAddr())
	}
	// Both ends open streams: the connector its control stream, the
	// gateway one stream per relayed connection.
	for _, dir := range []struct {
		name         string
		opener, peer tunnel.Session
	}{{"client opens", client, server}, {"server opens", server, client}} {
		t.Run(dir.name, func(t *testing.T) {
			a, b := streamPair(t, dir.opener, dir.peer)
			if n := dir.opener.NumStreams(); n < 1 {
				t.Errorf("opener has %d streams", n)
			}
			for _, p := range []struct {
				from, to tunnel.Stream
			}{{a, b}, {b, a}} {
				if _, err := p.from.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(p.to, buf); err != nil || string(buf) != "ping" {
					t.Fatalf("read %q, %v", buf, err)
				}
			}
		})
	}
}

// randomStream returns n deterministic pseudo-random bytes.
func testLargeTransfer(t *testing.T, tr transport) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	client, server := tr.pair(t, tunnel.Config{})
	a, b := streamPair(t, client, server)
	type sum struct {
		d [32]byte
		n int64
	}
	sent := []<-chan tunneltest.Result[[32]byte]{
		tunneltest.Async(func() ([32]byte, error) { return tunneltest.SendSum(a, tunneltest.RandomStream(1, size)) }),
		tunneltest.Async(func() ([32]byte, error) { return tunneltest.SendSum(b, tunneltest.RandomStream(2, size)) }),
	}
	recv := []<-chan tunneltest.Result[sum]{
		tunneltest.Async(func() (sum, error) { d, n, err := tunneltest.RecvSum(b); return sum{d, n}, err }),
		tunneltest.Async(func() (sum, error) { d, n, err := tunneltest.RecvSum(a); return sum{d, n}, err }),
	}
	for i, dir := range []string{"client to server", "server to client"} {
		want, err := tunneltest.Await(t, sent[i], dir+": send")
		if err != nil {
			t.Errorf("%s: send: %v", dir, err)
		}
		got, err := tunneltest.Await(t, recv[i], dir+": receive")
		if err != nil {
			t.Errorf("%s: receive: %v", dir, err)
		}
		if got.n != size || got.d != want {
			t.Errorf("%s: received %d bytes with digest %x, want %d with %x", dir, got.n, got.d[:8], size, want[:8])
		}
	}
}

func testConcurrentStreams(t *testing.T, tr transport) {
	const streams, size = 200, 32 << 10
	client, server := tr.pair(t, tunnel.Config{})
	serve(t, server, echo)
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			errs <- echoOnce(ctx, client, i, size)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// echoOnce sends size bytes on a new stream and checks that they come
// back.
func echoOnce(ctx context.Context, s tunnel.Session, i, size int) error {
	st, err := s.OpenStream(ctx)
	if err != nil {
		return fmt.Errorf("stream %d: open: %w", i, err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	want := make([]byte, size)
	for j := range want {
		want[j] = byte(i + j)
	}
	sent := tunneltest.Async(func() (int, error) {
		n, err := st.Write(want)
		if err == nil {
			err = st.CloseWrite()
		}
		return n, err
	})
	got, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("stream %d: read: %w", i, err)
	}
	if r := <-sent; r.Err != nil {
		return fmt.Errorf("stream %d: write: %w", i, r.Err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("stream %d: echoed %d bytes, want %d, equal %v", i, len(got), len(want), bytes.Equal(got, want))
	}
	return nil
}

func testHalfClose(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	a, b := streamPair(t, client, server)
	if _, err := a.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("write after CloseWrite succeeded")
	}
	b.SetReadDeadline(time.Now().Add(hang))
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "request" {
		t.Fatalf("peer read %q, %v; want the request then EOF", got, err)
	}
	// The reverse direction still works.
	if _, err := b.Write([]byte("response")); err != nil {
		t.Fatalf("peer cannot answer after EOF: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(hang))
	got, err = io.ReadAll(a)
	if err != nil || string(got) != "response" {
		t.Fatalf("read %q, %v; want the response then EOF", got, err)
	}
}

func testCloseUnblocksRead(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	for _, side := range []string{"opener", "acceptor"} {
		t.Run(side, func(t *testing.T) {
			a, b := streamPair(t, client, server)
			if side == "acceptor" {
				a, b = b, a
			}
			// One read returns data, so the next one is (almost
			// certainly) blocked when Close comes.
			if _, err := b.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			reads := make(chan error, 2)
			go func() {
				buf := make([]byte, 8)
				for {
					_, err := a.Read(buf)
					reads <- err
					if err != nil {
						return
					}
				}
			}()
			if err, _ := tunneltest.Await(t, tunneltest.Async(func() (error, error) { return <-reads, nil }), "first read"); err != nil {
				t.Fatalf("first read: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			err, _ := tunneltest.Await(t, tunneltest.Async(func() (error, error) { return <-reads, nil }), "read blocked across Close")
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked read returned %v, want net.ErrClosed", err)
			}
			if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after close: %v, want net.ErrClosed", err)
			}
			if _, err := a.Write([]byte("x")); err == nil {
				t.Error("write after close succeeded")
			}
			if err := a.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
			// The peer sees the end of the stream.
			b.SetReadDeadline(time.Now().Add(hang))
			if _, err := io.ReadAll(b); err != nil {
				t.Errorf("peer: %v, want EOF", err)
			}
		})
	}
}

// testCloseStopsPeerWrites: after Close, what the peer still sends is
// not read, so its writes must fail rather than block for ever. yamux has
// no reset on Close: the peer's writes stall once the window is full and
// fail when StreamCloseTimeout resets the stream.
func testCloseStopsPeerWrites(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{StreamCloseTimeout: 300 * time.Millisecond})
	a, b := streamPair(t, client, server)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	writes := tunneltest.Async(func() (int64, error) {
		buf := make([]byte, 64<<10)
		var n int64
		for {
			m, err := b.Write(buf)
			n += int64(m)
			if err != nil {
				return n, err
			}
		}
	})
	n, err := tunneltest.Await(t, writes, "peer writing to a closed stream")
	t.Logf("peer wrote %d bytes, then: %v", n, err)
}

func testReadDeadline(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	a, b := streamPair(t, client, server)
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := a.Read(make([]byte, 1))
	if n != 0 || !isTimeout(err) {
		t.Fatalf("read past deadline: %d, %v; want a timeout", n, err)
	}
	// A timed-out read leaves the stream usable.
	a.SetReadDeadline(time.Time{})
	if _, err := b.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "late" {
		t.Errorf("after timeout: %q, %v", buf, err)
	}
	// A deadline in the past fails at once, also through SetDeadline.
	a.SetDeadline(time.Unix(1, 0))
	if _, err := a.Read(buf); !isTimeout(err) {
		t.Errorf("read with past deadline: %v", err)
	}
}

func testPeerClosesSession(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	a, b := streamPair(t, client, server)
	if _, err := b.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(a, buf); err != nil {
		t.Fatal(err)
	}
	blocked := tunneltest.Async(func() (int, error) { return a.Read(buf) })
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, client.Done(), "client Done")
	waitClosed(t, server.Done(), "server Done")
	// A cut stream must not look like a clean end: yamux ends the streams
	// of a dead session with io.EOF, which the adapter turns into
	// ErrSessionClosed; QUIC reports the connection's close.
	if n, err := tunneltest.Await(t, blocked, "read across session close"); !errors.Is(err, tunnel.ErrSessionClosed) {
		t.Errorf("read returned %d bytes and %v, want ErrSessionClosed", n, err)
	} else {
		t.Logf("read across session close: %v", err)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("write on a dead session succeeded")
	}
	if _, err := client.OpenStream(context.Background()); err == nil {
		t.Error("open on a dead session succeeded")
	}
	if _, err := client.AcceptStream(context.Background()); err == nil {
		t.Error("accept on a dead session succeeded")
	}
}

func testCloseSession(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	accepting := tunneltest.Async(func() (tunnel.Stream, error) { return server.AcceptStream(context.Background()) })
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	waitClosed(t, server.Done(), "Done")
	if st, err := tunneltest.Await(t, accepting, "accept across close"); err == nil {
		st.Close()
		t.Error("accept returned a stream after close")
	}
	waitClosed(t, client.Done(), "peer Done")
}

func testContext(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if st, err := client.OpenStream(ctx); !errors.Is(err, context.Canceled) {
		if st != nil {
			st.Close()
		}
		t.Errorf("open with a cancelled context: %v", err)
	}
	if _, err := server.AcceptStream(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("accept with a cancelled context: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	accepting := tunneltest.Async(func() (tunnel.Stream, error) { return server.AcceptStream(ctx) })
	cancel()
	if _, err := tunneltest.Await(t, accepting, "accept across cancel"); !errors.Is(err, context.Canceled) {
		t.Errorf("accept across cancel: %v", err)
	}
	select {
	case <-server.Done():
		t.Error("a cancelled accept ended the session")
	default:
	}
}

// connector answers relay streams like a connector would, by service name:
// "echo" is accepted (a banner first, then an echo), "forbidden" is
// refused, "silent" never answers. The header read times out after
// headerTimeout. The errors of headers that could not be read go to bad.
type connector struct {
	headerTimeout time.Duration
	bad           chan error
}

func (c *connector) handle(st tunnel.Stream) {
	h, err := tunnel.ReadRequest(st, c.headerTimeout)
	if err != nil {
		c.bad <- err
		return
	}
	switch h.Service {
	case "echo":
		if tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusOK}, hang) != nil {
			return
		}
		st.Write([]byte("220 ready\n"))
		echo(st)
	case "forbidden":
		tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusForbidden, Message: "device " + h.DeviceID + " may not"}, hang)
	case "silent":
		io.Copy(io.Discard, st)
	default:
		tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusUnknownService}, hang)
	}
}

// badHeader waits for the connector to report a header it could not read.
func (c *connector) badHeader(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.bad:
		return err
	case <-time.After(hang):
		t.Fatalf("connector reported no bad header after %v", hang)
		return nil
	}
}

// noBadHeader checks that the connector reported no bad header so far.
func (c *connector) noBadHeader(t *testing.T) {
	t.Helper()
	select {
	case err := <-c.bad:
		t.Errorf("connector refused a header: %v", err)
	default:
	}
}

// relayPair returns a gateway session whose peer runs a connector.
func relayPair(t *testing.T, tr transport, headerTimeout time.Duration) (gateway tunnel.Session, c *connector) {
	client, server := tr.pair(t, tunnel.Config{})
	c = &connector{headerTimeout: headerTimeout, bad: make(chan error, 16)}
	serve(t, client, c.handle)
	return server, c
}

// relayEcho opens an echo relay on gw and checks banner and echo.
func relayEcho(t *testing.T, gw tunnel.Session) {
	t.Helper()
	st, err := tunnel.OpenRelay(context.Background(), gw,
		&tunnel.Header{Kind: tunnel.KindConnect, Service: "echo", DeviceID: "d1", CertSHA256: digest(), ClientAddr: "192.0.2.1:5"}, hang)
	if err != nil {
		t.Fatalf("open relay: %v", err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(hang))
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	st.CloseWrite()
	got, err := io.ReadAll(st)
	if err != nil || string(got) != "220 ready\nhello" {
		t.Fatalf("relay read %q, %v", got, err)
	}
}

func testRelayOK(t *testing.T, tr transport) {
	gw, c := relayPair(t, tr, hang)
	relayEcho(t, gw)
	relayEcho(t, gw)
	c.noBadHeader(t)
	// A header that cannot be encoded opens no stream.
	if _, err := tunnel.OpenRelay(context.Background(), gw, &tunnel.Header{Kind: tunnel.KindHTTP}, hang); !errors.Is(err, tunnel.ErrHeaderInvalid) {
		t.Errorf("header without service: %v", err)
	}
}

func testRelayRefused(t *testing.T, tr transport) {
	gw, _ := relayPair(t, tr, hang)
	tests := []struct {
		service string
		want    tunnel.Reply
	}{
		{"forbidden", tunnel.Reply{Status: tunnel.StatusForbidden, Message: "device d1 may not"}},
		{"nope", tunnel.Reply{Status: tunnel.StatusUnknownService}},
	}
	for _, tt := range tests {
		st, err := tunnel.OpenRelay(context.Background(), gw, &tunnel.Header{Kind: tunnel.KindConnect, Service: tt.service, DeviceID: "d1"}, hang)
		var se *tunnel.StatusError
		if !errors.As(err, &se) {
			if st != nil {
				st.Close()
			}
			t.Fatalf("%s: got %v, want a *StatusError", tt.service, err)
		}
		if se.Reply != tt.want {
			t.Errorf("%s: reply %+v, want %+v", tt.service, se.Reply, tt.want)
		}
	}
	relayEcho(t, gw)
}

func testRelayBadHeader(t *testing.T, tr transport) {
	gw, c := relayPair(t, tr, hang)
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"wrong version", []byte{9, 0, 5, 1, 1, 1, 'x'}, tunnel.ErrHeaderVersion},
		{"oversize", []byte{1, 0xff, 0xff}, tunnel.ErrHeaderTooLarge},
		{"no service", []byte{1, 0, 1, 1}, tunnel.ErrHeaderInvalid},
		{"truncated", []byte{1, 0, 9, 1}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := gw.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			st.SetDeadline(time.Now().Add(hang))
			st.Write(tt.raw)
			st.CloseWrite()
			rep, err := tunnel.ReadReply(st)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if rep.Status != tunnel.StatusBadHeader || rep.Message == "" {
				t.Errorf("reply %+v, want bad_header with a reason", rep)
			}
			// Then the connector closes the stream.
			if rest, err := io.ReadAll(st); err != nil || len(rest) != 0 {
				t.Errorf("after the reply: %q, %v; want EOF", rest, err)
			}
			if err := c.badHeader(t); !errors.Is(err, tt.want) {
				t.Errorf("connector saw %v, want %v", err, tt.want)
			}
			// The session is still good for the next stream.
			relayEcho(t, gw)
			c.noBadHeader(t)
		})
	}
}

func testRelayReplyTimeout(t *testing.T, tr transport) {
	const timeout = 200 * time.Millisecond
	gw, _ := relayPair(t, tr, hang)
	h := &tunnel.Header{Kind: tunnel.KindHTTP, Service: "silent"}
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		st, err := tunnel.OpenRelay(context.Background(), gw, h, timeout)
		if !isTimeout(err) {
			if st != nil {
				st.Close()
			}
			t.Fatalf("got %v, want a timeout", err)
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("gave up after %v, before the timeout", d)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		st, err := tunnel.OpenRelay(ctx, gw, h, hang)
		if !isTimeout(err) {
			if st != nil {
				st.Close()
			}
			t.Fatalf("got %v, want a timeout", err)
		}
	})
	relayEcho(t, gw)
}

func testRelayHeaderTimeout(t *testing.T, tr transport) {
	const timeout = 200 * time.Millisecond
	gw, c := relayPair(t, tr, timeout)
	st, err := gw.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A header begun and never finished: the connector gives up on it and
	// says so. (A stream that carries no byte at all never reaches a QUIC
	// peer, which learns of a stream from its first frame.)
	if _, err := st.Write([]byte{tunnel.HeaderVersion}); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(hang))
	rep, err := tunnel.ReadReply(st)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if rep.Status != tunnel.StatusBadHeader {
		t.Errorf("reply %+v, want bad_header", rep)
	}
	if err := c.badHeader(t); !isTimeout(err) {
		t.Errorf("connector saw %v, want a timeout", err)
	}
	relayEcho(t, gw)
	c.noBadHeader(t)
}
