package tunneltest

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
)

// QUICPair returns the client (connector) and server (gateway) ends of a
// QUIC session over real UDP on 127.0.0.1, with real TLS: the client end
// is made by tunnel.DialQUIC (a UDP socket of its own), the server end
// accepted from tunnel.ListenQUIC. Both, and the listener, are closed when
// the test ends.
func QUICPair(tb testing.TB, cfg tunnel.Config) (client, server tunnel.Session) {
	tb.Helper()
	srvConf, cliConf := TLSConfigs(tb)
	ln := QUICListener(tb, srvConf, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		s   tunnel.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := ln.Accept(ctx)
		done <- result{s, err}
	}()
	client, err := tunnel.DialQUIC(ctx, tunnel.DialConfig{Address: ln.Addr().String(), TLS: cliConf, Session: cfg})
	if err != nil {
		cancel()
		if r := <-done; r.s != nil {
			r.s.Close()
		}
		tb.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		client.Close()
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() { client.Close(); r.s.Close() })
	return client, r.s
}

// QUICListener listens for QUIC tunnels on a fresh UDP socket on
// 127.0.0.1 with the server configuration conf, until the test ends.
func QUICListener(tb testing.TB, conf *tls.Config, cfg tunnel.Config) *tunnel.QUICListener {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := tunnel.ListenQUIC(conn, conf, cfg)
	if err != nil {
		conn.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}
