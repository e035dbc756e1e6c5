package certstest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relay forwards the TCP connections it accepts on 127.0.0.1 to a target
// that can be set at any time, and counts them.
type relay struct {
	ln     net.Listener
	target atomic.Pointer[string]
	count  atomic.Int64

	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
	done bool
}

func startRelay(tb testing.TB) *relay {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("certstest: relay listen: %v", err)
	}
	r := &relay{ln: ln, open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	tb.Cleanup(r.close)
	return r
}

func (r *relay) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *relay) setTarget(addr string) { r.target.Store(&addr) }

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.count.Add(1)
		if !r.track(c) {
			return
		}
		r.wg.Add(1)
		go r.pipe(c)
	}
}

// track registers c so that close can interrupt it; false once closed.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		c.Close()
		return false
	}
	r.open[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.open, c)
	r.mu.Unlock()
	c.Close()
}

func (r *relay) pipe(c net.Conn) {
	defer r.wg.Done()
	defer r.untrack(c)
	t := r.target.Load()
	if t == nil {
		return
	}
	u, err := net.DialTimeout("tcp", *t, 5*time.Second)
	if err != nil || !r.track(u) {
		return
	}
	defer r.untrack(u)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(u, c)
		u.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(c, u)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	r.done = true
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
