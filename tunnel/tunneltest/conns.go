package tunneltest

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
)

// hang bounds the waits of these helpers.
const hang = 10 * time.Second

// TCPPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func TCPPair(tb testing.TB) (*net.TCPConn, *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-time.After(hang):
	}
	if s == nil {
		c.Close()
		tb.Fatal("accept: no connection")
	}
	tb.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// StreamPair opens a stream on client and accepts it on server; both are
// closed when the test ends.
func StreamPair(tb testing.TB, client, server tunnel.Session) (tunnel.Stream, tunnel.Stream) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	type accepted struct {
		st  tunnel.Stream
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		st, err := server.AcceptStream(ctx)
		acc <- accepted{st, err}
	}()
	c, err := client.OpenStream(ctx)
	if err != nil {
		tb.Fatalf("open stream: %v", err)
	}
	// Some transports (QUIC) announce a stream with its first byte only:
	// one byte goes over and is consumed here, so both ends start clean.
	if _, err := c.Write([]byte{'!'}); err != nil {
		c.Close()
		tb.Fatalf("write first byte: %v", err)
	}
	a := <-acc // AcceptStream ends with ctx at the latest
	if a.err != nil {
		c.Close()
		tb.Fatalf("accept stream: %v", a.err)
	}
	if _, err := io.ReadFull(a.st, make([]byte, 1)); err != nil {
		c.Close()
		a.st.Close()
		tb.Fatalf("read first byte: %v", err)
	}
	tb.Cleanup(func() { c.Close(); a.st.Close() })
	return c, a.st
}

// Streams returns the two ends of one stream of a fresh session pair over
// transport ("tcp": yamux over TLS, "quic"), with the default config.
func Streams(tb testing.TB, transport string) (tunnel.Stream, tunnel.Stream) {
	tb.Helper()
	pair := Pair
	if transport == tunnel.TransportQUIC {
		pair = QUICPair
	}
	client, server := pair(tb, tunnel.Config{})
	return StreamPair(tb, client, server)
}
