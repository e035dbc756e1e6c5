package tunnel_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// TestStreamReadAfterSessionDeath: when the session dies under a stream,
// Read reports ErrSessionClosed, not a clean EOF.
func TestStreamReadAfterSessionDeath(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			client, server := tr.pair(t, tunnel.Config{})
			_, ss := streamPair(t, client, server)
			read := tunneltest.Async(func() (int, error) { return ss.Read(make([]byte, 10)) })
			client.Close()
			_, err := tunneltest.Await(t, read, "read")
			if !errors.Is(err, tunnel.ErrSessionClosed) {
				t.Fatalf("read after the session died: %v, want ErrSessionClosed", err)
			}
		})
	}
}

// TestOpenRelayCanceled: a canceled request stops waiting for the
// connector's reply at once, long before the stream timeout.
func TestOpenRelayCanceled(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			client, server := tr.pair(t, tunnel.Config{})
			serve(t, server, func(st tunnel.Stream) { io.Copy(io.Discard, st) }) // never answers
			ctx, cancel := context.WithCancel(context.Background())
			opened := tunneltest.Async(func() (tunnel.Stream, error) {
				return tunnel.OpenRelay(ctx, client, &tunnel.Header{Kind: tunnel.KindHTTP, Service: "core"}, time.Hour)
			})
			cancel()
			if _, err := tunneltest.Await(t, opened, "OpenRelay"); err == nil {
				t.Fatal("OpenRelay succeeded without a reply")
			}
		})
	}
}
