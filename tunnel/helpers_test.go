package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// hang bounds waits for things that must happen "promptly": it only guards
// against a hung test, it asserts nothing about speed.
const hang = 10 * time.Second

// serve runs an accept loop on s that hands every stream to handle in its
// own goroutine. The loop and its handlers are stopped and waited for when
// the test ends (the session is closed first, so blocked handlers return).
func serve(t testing.TB, s tunnel.Session, handle func(tunnel.Stream)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := s.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				handle(st)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		s.Close()
		wg.Wait()
	})
}

// echo copies everything it reads back, then half-closes.
func echo(st tunnel.Stream) {
	io.Copy(st, st)
	st.CloseWrite()
}

// waitClosed waits for ch to close, failing the test after hang.
func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hang):
		t.Fatalf("%s: not closed after %v", what, hang)
	}
}

// result is what a goroutine of a test reports back to the test goroutine.
type result[T any] struct {
	v   T
	err error
}

// async runs f in a goroutine and returns a channel with its outcome.
// The test must receive from the channel (see get) before it ends.
func async[T any](f func() (T, error)) <-chan result[T] {
	ch := make(chan result[T], 1)
	go func() {
		v, err := f()
		ch <- result[T]{v, err}
	}()
	return ch
}

// get receives the outcome of an async call, failing the test after hang.
func get[T any](t testing.TB, ch <-chan result[T], what string) (T, error) {
	t.Helper()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-time.After(hang):
		t.Fatalf("%s: no result after %v", what, hang)
		panic("unreachable")
	}
}

// tcpPair and streamPair are tunneltest's, under the names the suite
// grew up with.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) { return tunneltest.TCPPair(t) }

func streamPair(t testing.TB, client, server tunnel.Session) (tunnel.Stream, tunnel.Stream) {
	return tunneltest.StreamPair(t, client, server)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// forEachTransport runs f as a subtest over every transport of the suite.
func forEachTransport(t *testing.T, f func(*testing.T, transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}
