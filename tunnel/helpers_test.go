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
