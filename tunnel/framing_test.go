package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recordConn records each Write it gets. When gate is set, each Write
// first says so on entered and then waits for gate.
type recordConn struct {
	net.Conn
	entered chan struct{}
	gate    chan struct{}
	err     error // what Write returns

	mu     sync.Mutex
	writes [][]byte
	closed bool
}

func (c *recordConn) Write(p []byte) (int, error) {
	if c.gate != nil {
		c.entered <- struct{}{}
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recordConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestFrameConnKeepsBytesAndFrames(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100)
	ping := yamuxHeader(2, 7)      // ping: no body follows
	update := yamuxHeader(1, 4096) // window update: length is a delta, no body
	cases := []struct {
		name   string
		writes [][]byte
	}{
		{"data header and body", [][]byte{yamuxHeader(0, 100), body}},
		{"control frames", [][]byte{ping, update}},
		{"empty data frame", [][]byte{yamuxHeader(0, 0)}},
		{"unexpected write after a data header", [][]byte{yamuxHeader(0, 100), ping}},
		{"mixed", [][]byte{ping, yamuxHeader(0, 100), body, update, yamuxHeader(0, 100), body}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordConn{}
			fc := newFrameConn(rec, time.Second)
			for _, w := range tc.writes {
				if n, err := fc.Write(w); err != nil || n != len(w) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
			}
			if err := fc.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := bytes.Join(rec.writes, nil), bytes.Join(tc.writes, nil); !bytes.Equal(got, want) {
				t.Errorf("connection got %x, want %x", got, want)
			}
			for i, w := range rec.writes {
				if len(w) == yamuxHeaderSize && w[1] == yamuxTypeData && binary.BigEndian.Uint32(w[8:]) > 0 {
					t.Errorf("write %d is a data header without its body", i)
				}
			}
			if !rec.closed {
				t.Error("Close did not close the connection")
			}
		})
	}
}

func TestFrameConnBatchesWhileWriting(t *testing.T) {
	rec := &recordConn{entered: make(chan struct{}), gate: make(chan struct{})}
	fc := newFrameConn(rec, time.Second)
	frame := append(yamuxHeader(0, 4), "abcd"...)
	fc.Write(frame[:yamuxHeaderSize])
	fc.Write(frame[yamuxHeaderSize:])
	<-rec.entered // the first frame is in the connection's Write
	for range 3 {
		fc.Write(frame[:yamuxHeaderSize])
		fc.Write(frame[yamuxHeaderSize:])
	}
	rec.gate <- struct{}{} // the three leave together
	<-rec.entered
	rec.gate <- struct{}{}
	fc.Close()
	if len(rec.writes) != 2 || len(rec.writes[1]) != 3*len(frame) {
		t.Errorf("writes of %v frames, want [1 3]", lens(rec.writes, len(frame)))
	}
}

func lens(writes [][]byte, frame int) []int {
	var n []int
	for _, w := range writes {
		n = append(n, len(w)/frame)
	}
	return n
}

func TestFrameConnWriteErrorClosesConnection(t *testing.T) {
	boom := errors.New("boom")
	rec := &recordConn{err: boom}
	fc := newFrameConn(rec, time.Second)
	fc.Write(yamuxHeader(2, 1))
	<-fc.done
	if !rec.closed {
		t.Error("a write error did not close the connection")
	}
	if _, err := fc.Write(yamuxHeader(2, 1)); !errors.Is(err, boom) {
		t.Errorf("Write after a write error = %v, want %v", err, boom)
	}
	fc.Close()
}

func TestFrameConnWriteAfterClose(t *testing.T) {
	fc := newFrameConn(&recordConn{}, time.Second)
	fc.Close()
	if _, err := fc.Write(yamuxHeader(2, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// A peer that reads nothing holds Close for writeTimeout at most, counted
// from the start of the stuck write, and a send loop waiting for room in a
// full queue is let go.
func TestFrameConnCloseStuckPeer(t *testing.T) {
	for _, stuck := range []time.Duration{0, 2 * time.Second, 5 * time.Second, time.Minute} {
		t.Run(stuck.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				defer b.Close()
				fc := newFrameConn(a, 5*time.Second)
				big := make([]byte, maxQueued)
				fc.Write(big) // the flusher takes it and blocks: b reads nothing
				synctest.Wait()
				fc.Write(big) // queued
				blocked := make(chan error)
				go func() {
					_, err := fc.Write(big) // no room
					blocked <- err
				}()
				time.Sleep(stuck)
				synctest.Wait()
				start := time.Now()
				fc.Close()
				if d, want := time.Since(start), max(5*time.Second-stuck, 0); d != want {
					t.Errorf("Close took %v, want %v", d, want)
				}
				if err := <-blocked; !errors.Is(err, net.ErrClosed) {
					t.Errorf("blocked Write = %v, want net.ErrClosed", err)
				}
			})
		})
	}
}
