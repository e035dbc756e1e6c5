package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// Behaviours of the QUIC transport beyond the shared suite.

// TestQUICConfig: what a Config makes of quic-go's settings.
func TestQUICConfig(t *testing.T) {
	q := tunnel.QUICConfigOf(tunnel.Config{})
	checks := []struct {
		name      string
		got, want any
	}{
		{"MaxIncomingStreams", q.MaxIncomingStreams, int64(10000)},
		{"MaxIncomingUniStreams", q.MaxIncomingUniStreams, int64(-1)},
		{"InitialStreamReceiveWindow", q.InitialStreamReceiveWindow, uint64(8 << 20)},
		{"MaxStreamReceiveWindow", q.MaxStreamReceiveWindow, uint64(8 << 20)},
		{"InitialConnectionReceiveWindow", q.InitialConnectionReceiveWindow, uint64(32 << 20)},
		{"MaxConnectionReceiveWindow", q.MaxConnectionReceiveWindow, uint64(32 << 20)},
		{"KeepAlivePeriod", q.KeepAlivePeriod, 5 * time.Second},
		{"MaxIdleTimeout", q.MaxIdleTimeout, 10 * time.Second}, // KeepAliveInterval + WriteTimeout, as yamux
		{"HandshakeIdleTimeout", q.HandshakeIdleTimeout, 5 * time.Second},
		{"Allow0RTT", q.Allow0RTT, false},
		{"EnableDatagrams", q.EnableDatagrams, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	q = tunnel.QUICConfigOf(tunnel.Config{KeepAliveInterval: time.Second, WriteTimeout: 3 * time.Second, StreamWindow: 1 << 20})
	if q.KeepAlivePeriod != time.Second || q.MaxIdleTimeout != 4*time.Second || q.MaxConnectionReceiveWindow != 4<<20 {
		t.Errorf("keepalive %v, idle timeout %v, connection window %d", q.KeepAlivePeriod, q.MaxIdleTimeout, q.MaxConnectionReceiveWindow)
	}
}

func TestQUICManyStreams(t *testing.T) {
	const streams, size = 1000, 4 << 10
	client, server := tunneltest.QUICPair(t, tunnel.Config{})
	serve(t, server, echo)
	ctx, cancel := context.WithTimeout(context.Background(), 3*hang)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() { errs <- echoOnce(ctx, client, i, size) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestQUICStreamLimit: beyond QUICMaxStreams, an open waits until one of
// the peer's streams has ended on both sides.
func TestQUICStreamLimit(t *testing.T) {
	const limit = 10
	client, server := tunneltest.QUICPair(t, tunnel.Config{QUICMaxStreams: limit})
	var clientEnds, serverEnds []tunnel.Stream
	for range limit {
		c, s := streamPair(t, client, server)
		clientEnds, serverEnds = append(clientEnds, c), append(serverEnds, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if st, err := client.OpenStream(ctx); !errors.Is(err, context.DeadlineExceeded) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("open beyond the limit: %v, want to wait until the deadline", err)
	}
	opened := tunneltest.Async(func() (tunnel.Stream, error) {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		return client.OpenStream(ctx)
	})
	clientEnds[0].Close()
	serverEnds[0].Close()
	st, err := tunneltest.Await(t, opened, "open once a stream ended")
	if err != nil {
		t.Fatalf("open once a stream ended: %v", err)
	}
	st.Close()
}

// TestQUICNumStreams: a stream counts until both of its directions have
// ended, by Close or by CloseWrite plus EOF.
func TestQUICNumStreams(t *testing.T) {
	client, server := tunneltest.QUICPair(t, tunnel.Config{})
	a, b := streamPair(t, client, server)
	if n, m := client.NumStreams(), server.NumStreams(); n != 1 || m != 1 {
		t.Fatalf("NumStreams: client %d, server %d; want 1 and 1", n, m)
	}
	a.Close()
	if n := client.NumStreams(); n != 0 {
		t.Errorf("client NumStreams after Close: %d", n)
	}
	// The server end: EOF read, then its own FIN.
	b.SetReadDeadline(time.Now().Add(hang))
	if _, err := io.ReadAll(b); err != nil {
		t.Fatalf("server read: %v", err)
	}
	if n := server.NumStreams(); n != 1 {
		t.Errorf("server NumStreams with the write side open: %d, want 1", n)
	}
	if err := b.CloseWrite(); err != nil {
		t.Logf("CloseWrite after the peer's Close: %v", err) // the peer's STOP_SENDING may come first
	}
	if n := server.NumStreams(); n != 0 {
		t.Errorf("server NumStreams after EOF and CloseWrite: %d", n)
	}
	client.Close()
	if n := server.NumStreams(); n != 0 {
		t.Errorf("NumStreams of a closed session: %d", n)
	}
}

// TestQUICCloseResetsPeerWrites: unlike yamux, a QUIC stream's Close makes
// the peer's blocked writes fail at once, with ErrStreamReset.
func TestQUICCloseResetsPeerWrites(t *testing.T) {
	client, server := tunneltest.QUICPair(t, tunnel.Config{StreamWindow: 256 << 10})
	a, b := streamPair(t, client, server)
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
	// The window fills: b's writes block, nobody reads.
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	a.Close()
	n, err := tunneltest.Await(t, writes, "peer writing to a closed stream")
	if !errors.Is(err, tunnel.ErrStreamReset) {
		t.Errorf("peer's write after %d bytes: %v, want ErrStreamReset", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("peer's write failed %v after Close, want at once", d)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, tunnel.ErrStreamReset) {
		t.Errorf("next write: %v, want ErrStreamReset", err)
	}
}

// TestQUICCloseCutsWrite: a Close that cuts a Write short resets the
// stream, so the peer reads an error, not the end of the data.
func TestQUICCloseCutsWrite(t *testing.T) {
	client, server := tunneltest.QUICPair(t, tunnel.Config{StreamWindow: 256 << 10})
	a, b := streamPair(t, client, server)
	wrote := tunneltest.Async(func() (int, error) { return a.Write(make([]byte, 4<<20)) })
	// A byte arrives: the write is under way, and blocks once the window
	// is full since the peer reads no more for now.
	b.SetReadDeadline(time.Now().Add(hang))
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	a.Close()
	if n, err := tunneltest.Await(t, wrote, "write cut by Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write cut by Close: %d bytes, %v; want net.ErrClosed", n, err)
	}
	n, err := io.Copy(io.Discard, b)
	if !errors.Is(err, tunnel.ErrStreamReset) {
		t.Errorf("peer read %d more bytes, then %v; want ErrStreamReset", n, err)
	}
}

// blackhole is a UDP socket that can be frozen: from then on it drops
// every datagram in both directions without an error, like a path gone
// black or a peer that died without a word.
type blackhole struct {
	*net.UDPConn
	frozen atomic.Bool
}

// packetConn is what quic-go gets: the UDPConn's batch and syscall
// methods are hidden, so quic-go reads and writes one datagram at a time,
// through the methods below.
func (b *blackhole) packetConn() net.PacketConn {
	return struct {
		net.PacketConn
		setBuffers
	}{b, setBuffers{b.UDPConn}}
}

type setBuffers struct{ c *net.UDPConn }

func (s setBuffers) SetReadBuffer(n int) error  { return s.c.SetReadBuffer(n) }
func (s setBuffers) SetWriteBuffer(n int) error { return s.c.SetWriteBuffer(n) }

func (b *blackhole) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := b.UDPConn.ReadFrom(p)
		if err != nil || !b.frozen.Load() {
			return n, addr, err
		}
	}
}

func (b *blackhole) WriteTo(p []byte, addr net.Addr) (int, error) {
	if b.frozen.Load() {
		return len(p), nil
	}
	return b.UDPConn.WriteTo(p, addr)
}

// TestQUICIdleTimeout: keepalives hold an idle session up, and a peer
// gone silent ends it on both sides within KeepAliveInterval +
// WriteTimeout. It runs in real time: a synctest bubble cannot drive real
// sockets.
func TestQUICIdleTimeout(t *testing.T) {
	cfg := tunnel.Config{KeepAliveInterval: 100 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}
	idle := cfg.KeepAliveInterval + cfg.WriteTimeout
	srvConf, cliConf := tunneltest.TLSConfigs(t)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	hole := &blackhole{UDPConn: udp}
	ln, err := tunnel.ListenQUIC(hole.packetConn(), srvConf, cfg)
	if err != nil {
		udp.Close()
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := tunneltest.Async(func() (tunnel.Session, error) { return ln.Accept(context.Background()) })
	client, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: udp.LocalAddr().String(), TLS: cliConf, Session: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := tunneltest.Await(t, accepted, "accept")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	_, ss := streamPair(t, client, server)

	time.Sleep(4 * idle)
	for name, s := range map[string]tunnel.Session{"client": client, "server": server} {
		select {
		case <-s.Done():
			t.Fatalf("%s: an idle session with keepalives ended", name)
		default:
		}
	}

	read := tunneltest.Async(func() (int, error) { return ss.Read(make([]byte, 1)) })
	start := time.Now()
	hole.frozen.Store(true)
	waitClosed(t, client.Done(), "client Done after the path went black")
	waitClosed(t, server.Done(), "server Done after the path went black")
	if d := time.Since(start); d < idle*3/4 {
		t.Errorf("sessions ended %v after the path went black, before the idle timeout %v", d, idle)
	} else {
		t.Logf("sessions ended %v after the path went black (idle timeout %v)", d, idle)
	}
	if _, err := tunneltest.Await(t, read, "read across the idle timeout"); !errors.Is(err, tunnel.ErrSessionClosed) {
		t.Errorf("read across the idle timeout: %v, want ErrSessionClosed", err)
	}
}
