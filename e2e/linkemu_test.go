package e2e

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A userspace WAN link emulator (this kernel has no netem), with one model
// for both relays: each direction of a link serialises what it carries at
// rate, delivers it delay later, and holds at most limit bytes that were
// sent but not yet delivered (queued or on the wire). A TCP relay waits for
// room (its reads stop, and TCP's own flow control pushes back on the
// sender); a UDP relay drops what does not fit, as a router's full queue
// does.

// linkShape is one direction's shape.
type linkShape struct {
	rate  float64       // bytes per second
	delay time.Duration // one way
	limit int           // bytes sent but not yet delivered, at most
}

// wanShape is a link of mbit Mbit/s and rtt round trip, each direction
// holding at most one bandwidth-delay product (bandwidth × rtt).
func wanShape(mbit float64, rtt time.Duration) linkShape {
	rate := mbit * 1e6 / 8
	return linkShape{rate: rate, delay: rtt / 2, limit: int(rate * rtt.Seconds())}
}

// link is one direction of an emulated link.
type link struct {
	shape   linkShape
	deliver func([]byte) error // nil: the end of the stream

	mu       sync.Mutex
	cond     *sync.Cond // bytes left the link, a packet arrived, or it closed
	q        []timed
	inFlight int
	free     time.Time // when the serialiser is next free
	closed   bool
	dropped  atomic.Int64
	done     chan struct{}
}

type timed struct {
	b  []byte // nil: end of stream
	at time.Time
}

func newLink(shape linkShape, deliver func([]byte) error) *link {
	l := &link{shape: shape, deliver: deliver, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// send puts b (owned by the link from now on) on the link. With wait it
// waits for room; without, it drops b when the link is full. It reports
// whether b was taken.
func (l *link) send(b []byte, wait bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for wait && !l.closed && l.inFlight > 0 && l.inFlight+len(b) > l.shape.limit {
		l.cond.Wait()
	}
	if l.closed || l.inFlight > 0 && l.inFlight+len(b) > l.shape.limit {
		l.dropped.Add(1)
		return false
	}
	start := later(time.Now(), l.free)
	l.free = start.Add(time.Duration(float64(len(b)) / l.shape.rate * float64(time.Second)))
	l.q = append(l.q, timed{b: b, at: l.free.Add(l.shape.delay)})
	l.inFlight += len(b)
	l.cond.Broadcast()
	return true
}

// end delivers the end of the stream after what was sent before it.
func (l *link) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.q = append(l.q, timed{at: later(time.Now(), l.free).Add(l.shape.delay)})
		l.cond.Broadcast()
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// run delivers, in order, everything whose time has come, until close or
// the end of the stream.
func (l *link) run() {
	defer close(l.done)
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.closed {
			l.cond.Wait()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		head := l.q[0].at
		l.mu.Unlock()
		time.Sleep(time.Until(head))
		l.mu.Lock()
		now := time.Now()
		var due []timed
		for len(l.q) > 0 && !l.q[0].at.After(now) {
			due = append(due, l.q[0])
			l.inFlight -= len(l.q[0].b)
			l.q = l.q[1:]
		}
		l.cond.Broadcast()
		l.mu.Unlock()
		for _, p := range due {
			if err := l.deliver(p.b); err != nil || p.b == nil {
				l.close()
				return
			}
		}
	}
}

// close drops what is on the link and stops it; it waits for run.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

func (l *link) wait() { <-l.done }

// tcpRelay accepts connections and relays each to target over a link of
// the given shape in each direction.
type tcpRelay struct {
	ln     net.Listener
	target string
	shape  linkShape
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startTCPRelay(tb testing.TB, target string, shape linkShape) *tcpRelay {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &tcpRelay{ln: ln, target: target, shape: shape, conns: map[net.Conn]bool{}}
	r.wg.Go(r.accept)
	tb.Cleanup(r.close)
	return r
}

func (r *tcpRelay) addr() string { return r.ln.Addr().String() }

func (r *tcpRelay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c, up) {
			return
		}
		r.wg.Go(func() { r.pipe(c, up) })
	}
}

func (r *tcpRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = true
	}
	return true
}

// pipe relays both directions of one connection, each over its own link.
func (r *tcpRelay) pipe(a, b net.Conn) {
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	wg.Go(func() { streamOver(a, b, r.shape) })
	wg.Go(func() { streamOver(b, a, r.shape) })
	wg.Wait()
	r.mu.Lock()
	delete(r.conns, a)
	delete(r.conns, b)
	r.mu.Unlock()
}

// streamOver moves src's bytes to dst through a link, in chunks of at
// most 16 KiB, and half-closes dst after the last one.
func streamOver(src, dst net.Conn, shape linkShape) {
	l := newLink(shape, func(b []byte) error {
		if b == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				return cw.CloseWrite()
			}
			return dst.Close()
		}
		_, err := dst.Write(b)
		return err
	})
	defer l.wait()
	for {
		buf := make([]byte, 16<<10)
		n, err := src.Read(buf)
		if n > 0 && !l.send(buf[:n], true) {
			src.Close()
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				l.end()
			} else {
				l.close()
				dst.Close()
			}
			return
		}
	}
}

func (r *tcpRelay) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}

// udpRelay relays datagrams between its clients and target, over a link
// per direction and client, dropping what a full link cannot take.
type udpRelay struct {
	pc     *net.UDPConn
	target *net.UDPAddr
	shape  linkShape
	wg     sync.WaitGroup
	mu     sync.Mutex
	peers  map[string]*udpPeer
}

type udpPeer struct {
	up       *net.UDPConn
	toTarget *link
	toClient *link
}

func startUDPRelay(tb testing.TB, target string, shape linkShape) *udpRelay {
	tb.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	pc.SetReadBuffer(8 << 20)
	pc.SetWriteBuffer(8 << 20)
	r := &udpRelay{pc: pc, target: ta, shape: shape, peers: map[string]*udpPeer{}}
	r.wg.Go(r.fromClients)
	tb.Cleanup(r.close)
	return r
}

func (r *udpRelay) addr() string { return r.pc.LocalAddr().String() }

func (r *udpRelay) fromClients() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p := r.peer(from)
		if p == nil {
			return
		}
		p.toTarget.send(append([]byte(nil), buf[:n]...), false)
	}
}

// peer returns the upstream socket and links of a client, made at its
// first datagram.
func (r *udpRelay) peer(from *net.UDPAddr) *udpPeer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers == nil {
		return nil
	}
	if p, ok := r.peers[from.String()]; ok {
		return p
	}
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil
	}
	up.SetReadBuffer(8 << 20)
	up.SetWriteBuffer(8 << 20)
	p := &udpPeer{up: up}
	p.toTarget = newLink(r.shape, func(b []byte) error { up.Write(b); return nil })
	p.toClient = newLink(r.shape, func(b []byte) error { r.pc.WriteToUDP(b, from); return nil })
	r.peers[from.String()] = p
	r.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			p.toClient.send(append([]byte(nil), buf[:n]...), false)
		}
	})
	return p
}

// dropped counts datagrams a full link dropped, both directions.
func (r *udpRelay) dropped() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, p := range r.peers {
		n += p.toTarget.dropped.Load() + p.toClient.dropped.Load()
	}
	return n
}

func (r *udpRelay) close() {
	r.pc.Close()
	r.mu.Lock()
	peers := r.peers
	r.peers = nil
	r.mu.Unlock()
	for _, p := range peers {
		p.up.Close()
		p.toTarget.close()
		p.toClient.close()
		p.toTarget.wait()
		p.toClient.wait()
	}
	r.wg.Wait()
}

// The link keeps its shape: delay on an idle link, rate on a busy one,
// drops beyond the bound when it may not wait.
func TestLinkShape(t *testing.T) {
	shape := linkShape{rate: 10e6, delay: 20 * time.Millisecond, limit: 200e3} // 80 Mbit/s, 40 ms RTT
	var mu sync.Mutex
	var got int
	var last time.Time
	l := newLink(shape, func(b []byte) error {
		mu.Lock()
		got += len(b)
		last = time.Now()
		mu.Unlock()
		return nil
	})
	defer l.wait()
	defer l.close()

	start := time.Now()
	l.send(make([]byte, 100), true)
	waitFor(t, "one packet", func() bool { mu.Lock(); defer mu.Unlock(); return got == 100 })
	// Never early; late only as much as a loaded machine makes it.
	if d := last.Sub(start); d < shape.delay || d > shape.delay+100*time.Millisecond {
		t.Errorf("an idle link delivered after %v, want about %v", d, shape.delay)
	}

	// 1 MB at 10 MB/s: 100 ms on the wire plus the delay, never more than
	// limit in flight.
	start = time.Now()
	for range 100 {
		l.send(make([]byte, 10e3), true)
		if l.inFlightNow() > shape.limit {
			t.Fatalf("%d bytes in flight, limit %d", l.inFlightNow(), shape.limit)
		}
	}
	waitFor(t, "1 MB", func() bool { mu.Lock(); defer mu.Unlock(); return got == 100+1e6 })
	if d := last.Sub(start); d < 115*time.Millisecond || d > 400*time.Millisecond {
		t.Errorf("1 MB took %v, want about 120 ms", d)
	}

	// Without waiting, what does not fit is dropped: about limit is taken.
	taken := 0
	for range 50 {
		if l.send(make([]byte, 10e3), false) {
			taken++
		}
	}
	if taken < 19 || taken > 22 || l.dropped.Load() != int64(50-taken) {
		t.Errorf("took %d of 50 packets of 10 kB (dropped %d), want about 20", taken, l.dropped.Load())
	}
}

func (l *link) inFlightNow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight
}

// Both relays add the round trip, and the TCP relay carries a stream
// whole, end included.
func TestRelaysAddRoundTrip(t *testing.T) {
	shape := wanShape(100, 30*time.Millisecond)
	echoTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echoTCP.Close()
	go func() {
		c, err := echoTCP.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	echoUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echoUDP.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echoUDP.ReadFrom(buf)
			if err != nil {
				return
			}
			echoUDP.WriteTo(buf[:n], from)
		}
	}()
	tr := startTCPRelay(t, echoTCP.Addr().String(), shape)
	ur := startUDPRelay(t, echoUDP.LocalAddr().String(), shape)
	for _, network := range []string{"tcp", "udp"} {
		addr := tr.addr()
		if network == "udp" {
			addr = ur.addr()
		}
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(hangGuard))
		start := time.Now()
		msg := []byte("hello over the WAN")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(c, back); err != nil || string(back) != string(msg) {
			t.Fatalf("%s: %q, %v", network, back, err)
		}
		if d := time.Since(start); d < 30*time.Millisecond || d > 200*time.Millisecond {
			t.Errorf("%s: round trip %v, want about 30 ms", network, d)
		}
		if network == "tcp" {
			c.(*net.TCPConn).CloseWrite()
			if n, err := c.Read(back); n != 0 || err != io.EOF {
				t.Errorf("tcp: after the end, read %d, %v; want EOF", n, err)
			}
		}
		c.Close()
	}
}
