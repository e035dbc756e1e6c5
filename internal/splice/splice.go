package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// BufferSize is the size of the pooled buffers used to copy stream bytes.
const BufferSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// GetBuffer takes a copy buffer from the pool; PutBuffer returns it.
func GetBuffer() *[]byte  { return bufPool.Get().(*[]byte) }
func PutBuffer(b *[]byte) { bufPool.Put(b) }

type closeWriter interface{ CloseWrite() error }

// Config tunes Run.
type Config struct {
	// Idle closes both ends when nothing moved either way for that long;
	// 0: never.
	Idle time.Duration
	// HalfClose passes an EOF on as CloseWrite, so the other direction
	// goes on (raw TCP services). Without it an EOF in either direction
	// ends both (pooled HTTP streams, whose peer never half-closes: there
	// an EOF means "gone", and a download nobody reads must stop at once).
	HalfClose bool
	// OnAToB and OnBToA, when set, are told each chunk copied, as it is
	// copied, so that long-lived connections show in counters early.
	OnAToB, OnBToA func(n int)
}

// Run copies between a and b in both directions until both directions
// have ended, then closes both. An error in either direction closes both
// at once. It returns the bytes copied each way and the first error that
// was not an ordinary end of stream (ErrIdle after an idle timeout).
func Run(a, b net.Conn, cfg Config) (aToB, bToA int64, err error) {
	st := &spliceState{idle: cfg.Idle, halfClose: cfg.HalfClose}
	st.last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	var errBA error
	wg.Go(func() { bToA, errBA = st.copyHalf(a, b, cfg.OnBToA) })
	aToB, err = st.copyHalf(b, a, cfg.OnAToB)
	wg.Wait()
	a.Close()
	b.Close()
	if err == nil {
		err = errBA
	}
	return aToB, bToA, err
}

// spliceState is shared by the two halves of a splice.
type spliceState struct {
	idle      time.Duration
	halfClose bool
	last      atomic.Int64 // unix nanos of the last progress, both directions
	ended     atomic.Bool  // a half closed both ends: the other's errors are ours
}

// copyHalf copies src to dst, then closes dst's write side when half-close
// is allowed, or else (and on error) both ends so that the other half stops
// too. An error caused by that closing is not reported.
func (st *spliceState) copyHalf(dst, src net.Conn, counted func(int)) (int64, error) {
	buf := GetBuffer()
	defer PutBuffer(buf)
	r := io.Reader(src)
	if st.idle > 0 {
		r = &idleReader{c: src, idle: st.idle, last: &st.last}
	}
	w := io.Writer(dst)
	if counted != nil {
		w = countWriter{w: dst, f: counted}
	}
	// Hide ReadFrom/WriteTo so that io.CopyBuffer uses the pooled buffer.
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, *buf)
	if err == nil && st.halfClose {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return n, nil
		}
	}
	if st.ended.Swap(true) || isClosed(err) {
		err = nil // the other half ended the splice and closed us
	}
	dst.Close()
	src.Close()
	return n, err
}

// idleReader reads from c with a deadline that moves while bytes move in
// either direction of the splice.
type idleReader struct {
	c    net.Conn
	idle time.Duration
	last *atomic.Int64 // unix nanos of the last progress, both directions
	set  time.Time     // deadline currently set on c
}

func (r *idleReader) Read(p []byte) (int, error) {
	for {
		now := time.Now()
		// Refresh the deadline only when a good part of it has passed.
		if r.set.Sub(now) < r.idle-r.idle/8 {
			r.set = now.Add(r.idle)
			r.c.SetReadDeadline(r.set)
		}
		n, err := r.c.Read(p)
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
		}
		if err != nil && n == 0 && isTimeout(err) {
			quiet := time.Since(time.Unix(0, r.last.Load()))
			if quiet < r.idle {
				r.set = time.Time{} // the other direction moved: wait on
				continue
			}
			return 0, ErrIdle
		}
		return n, err
	}
}

// ErrIdle is returned by Run when nothing moved for the idle timeout.
var ErrIdle = errors.New("idle timeout")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

// countWriter reports each write's size.
type countWriter struct {
	w io.Writer
	f func(int)
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.f(n)
	}
	return n, err
}
