package splice_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sekisho/sekisho/internal/splice"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// end makes one side of a splice: outer is what the test drives, inner is
// what Splice gets.
type end struct {
	name string
	make func(t *testing.T) (outer, inner net.Conn)
}

var spliceEnds = []end{
	{"tcp", func(t *testing.T) (net.Conn, net.Conn) { return tunneltest.TCPPair(t) }},
	{"stream", func(t *testing.T) (net.Conn, net.Conn) { return tunneltest.Streams(t, "tcp") }},
	{"quic", func(t *testing.T) (net.Conn, net.Conn) { return tunneltest.Streams(t, "quic") }},
}

// splice runs splice.Run(a, b, splice.Config{Idle: idle, HalfClose: true}) in a goroutine.
type spliceResult struct{ aToB, bToA int64 }

func startSplice(a, b net.Conn, idle time.Duration) <-chan tunneltest.Result[spliceResult] {
	return tunneltest.Async(func() (spliceResult, error) {
		ab, ba, err := splice.Run(a, b, splice.Config{Idle: idle, HalfClose: true})
		return spliceResult{ab, ba}, err
	})
}

// closeWrite half-closes c.
func closeWrite(c net.Conn) error {
	return c.(interface{ CloseWrite() error }).CloseWrite()
}

func TestSpliceCopiesBothWays(t *testing.T) {
	const n1, n2 = 3<<20 + 7, 1<<20 + 3
	for _, left := range spliceEnds {
		for _, right := range spliceEnds {
			for _, idle := range []time.Duration{0, time.Minute} {
				t.Run(fmt.Sprintf("%s-%s/idle=%v", left.name, right.name, idle), func(t *testing.T) {
					x, a := left.make(t)
					y, b := right.make(t)
					spliced := startSplice(a, b, idle)
					send := func(c net.Conn, seed uint64, n int64) <-chan tunneltest.Result[[32]byte] {
						return tunneltest.Async(func() ([32]byte, error) { return tunneltest.SendSum(c.(halfCloser), tunneltest.RandomStream(seed, n)) })
					}
					recv := func(c net.Conn) <-chan tunneltest.Result[[32]byte] {
						return tunneltest.Async(func() ([32]byte, error) {
							d, _, err := tunneltest.RecvSum(c)
							return d, err
						})
					}
					sx, sy := send(asStream(x), 1, n1), send(asStream(y), 2, n2)
					ry, rx := recv(y), recv(x)
					for _, p := range []struct {
						name       string
						sent, recv <-chan tunneltest.Result[[32]byte]
					}{{"left to right", sx, ry}, {"right to left", sy, rx}} {
						want, err := tunneltest.Await(t, p.sent, p.name+": send")
						if err != nil {
							t.Errorf("%s: send: %v", p.name, err)
						}
						got, err := tunneltest.Await(t, p.recv, p.name+": receive")
						if err != nil || got != want {
							t.Errorf("%s: received digest %x, %v; want %x", p.name, got[:4], err, want[:4])
						}
					}
					r, err := tunneltest.Await(t, spliced, "splice")
					if err != nil || r.aToB != n1 || r.bToA != n2 {
						t.Errorf("splice: %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, err, n1, n2)
					}
				})
			}
		}
	}
}

// halfCloser is a connection that can half-close: TCP, or a tunnel stream.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// asStream lets a TCP connection pass where a half-closer is wanted.
func asStream(c net.Conn) halfCloser { return c.(halfCloser) }

func TestSpliceHalfClose(t *testing.T) {
	for _, left := range spliceEnds {
		for _, right := range spliceEnds {
			t.Run(left.name+"-"+right.name, func(t *testing.T) {
				x, a := left.make(t)
				y, b := right.make(t)
				spliced := startSplice(a, b, time.Minute)
				if _, err := x.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
				if err := closeWrite(x); err != nil {
					t.Fatal(err)
				}
				y.SetDeadline(time.Now().Add(hang))
				got, err := io.ReadAll(y)
				if err != nil || string(got) != "request" {
					t.Fatalf("right read %q, %v; want the request then EOF", got, err)
				}
				// The EOF went through, the answer still flows back.
				if _, err := y.Write([]byte("response")); err != nil {
					t.Fatalf("right cannot answer: %v", err)
				}
				if err := closeWrite(y); err != nil {
					t.Fatal(err)
				}
				x.SetDeadline(time.Now().Add(hang))
				got, err = io.ReadAll(x)
				if err != nil || string(got) != "response" {
					t.Fatalf("left read %q, %v; want the response then EOF", got, err)
				}
				r, err := tunneltest.Await(t, spliced, "splice")
				if err != nil || r.aToB != 7 || r.bToA != 8 {
					t.Errorf("splice: %d, %d, %v; want 7, 8, nil", r.aToB, r.bToA, err)
				}
			})
		}
	}
}

var errBoom = errors.New("boom")

// failConn fails its reads with errBoom once it has read after bytes.
type failConn struct {
	net.Conn
	after int64
	read  atomic.Int64
}

func (c *failConn) Read(p []byte) (int, error) {
	if c.read.Load() >= c.after {
		return 0, errBoom
	}
	p = p[:min(int64(len(p)), c.after-c.read.Load())]
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func TestSpliceErrorClosesBoth(t *testing.T) {
	for _, left := range spliceEnds {
		for _, right := range spliceEnds {
			t.Run(left.name+"-"+right.name, func(t *testing.T) {
				x, a := left.make(t)
				y, b := right.make(t)
				// Left to right fails after 5 bytes; right to left is
				// idle, blocked in a read of b, and must stop too.
				spliced := startSplice(&failConn{Conn: a, after: 5}, b, 0)
				if _, err := x.Write([]byte("hello, world")); err != nil {
					t.Fatal(err)
				}
				y.SetDeadline(time.Now().Add(hang))
				got, _ := io.ReadAll(y)
				if string(got) != "hello" {
					t.Errorf("right read %q, want %q", got, "hello")
				}
				r, err := tunneltest.Await(t, spliced, "splice")
				if !errors.Is(err, errBoom) || r.aToB != 5 || r.bToA != 0 {
					t.Errorf("splice: %d, %d, %v; want 5, 0, %v", r.aToB, r.bToA, err, errBoom)
				}
				// Both inner ends are closed: the left peer sees the end.
				x.SetDeadline(time.Now().Add(hang))
				if _, err := x.Read(make([]byte, 1)); err == nil || isTimeout(err) {
					t.Errorf("left read after the splice failed: %v, want the end of the connection", err)
				}
			})
		}
	}
}

// TestSpliceIdle runs in a synctest bubble over net.Pipe: the idle timer
// is checked in fake time, exactly.
func TestSpliceIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	t.Run("quiet", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			x, a := net.Pipe()
			y, b := net.Pipe()
			defer x.Close()
			defer y.Close()
			start := time.Now()
			aToB, bToA, err := splice.Run(a, b, splice.Config{Idle: idle, HalfClose: true})
			if !errors.Is(err, splice.ErrIdle) || aToB != 0 || bToA != 0 {
				t.Errorf("got %d, %d, %v; want 0, 0, ErrIdle", aToB, bToA, err)
			}
			if d := time.Since(start); d != idle {
				t.Errorf("closed after %v of silence, want %v", d, idle)
			}
			for name, c := range map[string]net.Conn{"left": x, "right": y} {
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Errorf("%s: %v, want EOF", name, err)
				}
			}
		})
	})
	// Bytes moving one way keep the quiet direction open, for as long as
	// they move.
	for _, dir := range []string{"left to right", "right to left"} {
		t.Run("one way/"+dir, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x, a := net.Pipe()
				y, b := net.Pipe()
				defer x.Close()
				defer y.Close()
				src, dst := x, y
				if dir == "right to left" {
					src, dst = y, x
				}
				const chunks, every = 40, idle / 4 // 10 × idle in all
				go func() {
					defer src.Close()
					for range chunks {
						if _, err := src.Write(make([]byte, 1000)); err != nil {
							return
						}
						time.Sleep(every)
					}
				}()
				received := tunneltest.Async(func() (int64, error) { return io.Copy(io.Discard, dst) })
				start := time.Now()
				aToB, bToA, err := splice.Run(a, b, splice.Config{Idle: idle, HalfClose: true})
				if err != nil {
					t.Errorf("splice: %v after %v", err, time.Since(start))
				}
				if d := time.Since(start); d < chunks*every {
					t.Errorf("splice ended after %v, before the transfer (%v)", d, chunks*every)
				}
				if aToB+bToA != chunks*1000 || (dir == "left to right") != (aToB > 0) {
					t.Errorf("copied %d to the right, %d to the left", aToB, bToA)
				}
				if n, _ := tunneltest.Await(t, received, "receive"); n != chunks*1000 {
					t.Errorf("received %d bytes, want %d", n, chunks*1000)
				}
			})
		})
	}
}

// TestSpliceIdleRealConns checks the idle timeout over a tunnel stream and
// TCP in real time: outcomes only, the timings are loose.
func TestSpliceIdleRealConns(t *testing.T) {
	const idle = 200 * time.Millisecond
	stream, tcp := spliceEnds[1], spliceEnds[0]
	t.Run("quiet", func(t *testing.T) {
		x, a := stream.make(t)
		y, b := tcp.make(t)
		_, err := tunneltest.Await(t, startSplice(a, b, idle), "splice")
		if !errors.Is(err, splice.ErrIdle) {
			t.Errorf("got %v, want ErrIdle", err)
		}
		for name, c := range map[string]net.Conn{"stream": x, "tcp": y} {
			c.SetReadDeadline(time.Now().Add(hang))
			if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Errorf("%s: read %d, %v; want the end of the connection", name, n, err)
			}
		}
	})
	t.Run("one way", func(t *testing.T) {
		x, a := stream.make(t)
		y, b := tcp.make(t)
		spliced := startSplice(a, b, idle)
		const chunks, every = 60, 10 * time.Millisecond // 3 × idle in all
		sent := tunneltest.Async(func() (int, error) {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := range chunks {
				if _, err := x.Write(make([]byte, 1000)); err != nil {
					return i, err
				}
				<-tick.C
			}
			return chunks, closeWrite(x)
		})
		y.SetReadDeadline(time.Now().Add(hang))
		n, err := io.Copy(io.Discard, y)
		if err != nil || n != chunks*1000 {
			t.Errorf("received %d bytes, %v; want %d", n, err, chunks*1000)
		}
		if _, err := tunneltest.Await(t, sent, "send"); err != nil {
			t.Errorf("send: %v", err)
		}
		closeWrite(y)
		if r, err := tunneltest.Await(t, spliced, "splice"); err != nil || r.aToB != chunks*1000 {
			t.Errorf("splice: %+v, %v", r, err)
		}
	})
}

func TestBufferPool(t *testing.T) {
	b := splice.GetBuffer()
	if len(*b) != splice.BufferSize {
		t.Errorf("buffer of %d bytes, want %d", len(*b), splice.BufferSize)
	}
	splice.PutBuffer(b)
}

// TestSpliceWholeEOFEndsBoth: without half-close, the left peer's EOF ends
// the splice at once even though the right peer still has bytes to send
// (a download nobody reads any more), and the right peer sees the end: a
// TCP peer's writes fail, a tunnel peer reads the end of the stream (as the
// connector's own splice does).
func TestSpliceWholeEOFEndsBoth(t *testing.T) {
	for _, left := range spliceEnds {
		for _, right := range spliceEnds {
			t.Run(left.name+"-"+right.name, func(t *testing.T) {
				x, a := left.make(t)
				y, b := right.make(t)
				spliced := tunneltest.Async(func() (spliceResult, error) {
					ab, ba, err := splice.Run(a, b, splice.Config{Idle: time.Minute})
					return spliceResult{ab, ba}, err
				})
				y.SetDeadline(time.Now().Add(hang))
				ended := make(chan error, 2)
				go func() { // the right peer keeps sending; nobody on the left reads
					buf := make([]byte, 32<<10)
					for {
						if _, err := y.Write(buf); err != nil {
							ended <- err
							return
						}
					}
				}()
				go func() {
					_, err := io.Copy(io.Discard, y)
					if err == nil {
						err = io.EOF
					}
					ended <- err
				}()
				if err := closeWrite(x); err != nil {
					t.Fatal(err)
				}
				if _, err := tunneltest.Await(t, spliced, "splice"); err != nil {
					t.Fatalf("splice: %v", err)
				}
				if err := <-ended; isTimeout(err) {
					t.Fatalf("right peer did not see the end: %v", err)
				}
				y.Close() // stops the other goroutine
				<-ended
			})
		}
	}
}

// TestSpliceWithCounts: the callbacks see every byte, as it moves.
func TestSpliceWithCounts(t *testing.T) {
	x, a := tunneltest.TCPPair(t)
	y, b := tunneltest.TCPPair(t)
	var ab, ba atomic.Int64
	spliced := tunneltest.Async(func() (spliceResult, error) {
		n1, n2, err := splice.Run(a, b, splice.Config{
			OnAToB: func(n int) { ab.Add(int64(n)) }, OnBToA: func(n int) { ba.Add(int64(n)) }})
		return spliceResult{n1, n2}, err
	})
	msg := make([]byte, 300<<10)
	if _, err := x.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(y, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	if got := ab.Load(); got != int64(len(msg)) {
		t.Fatalf("counted %d bytes a->b before the splice ended, want %d", got, len(msg))
	}
	y.Write([]byte("back"))
	io.ReadFull(x, make([]byte, 4))
	x.Close()
	r, _ := tunneltest.Await(t, spliced, "splice")
	if r.aToB != ab.Load() || r.bToA != ba.Load() || ba.Load() != 4 {
		t.Fatalf("totals %d/%d, counted %d/%d", r.aToB, r.bToA, ab.Load(), ba.Load())
	}
}

// hang bounds waits for things that must happen promptly; it only guards
// against hangs.
const hang = 10 * time.Second

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
