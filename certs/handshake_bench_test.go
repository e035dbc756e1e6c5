package certs_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
)

// BenchmarkHandshake measures full TLS 1.3 handshakes (no resumption) of
// sekisho's server configuration with an ECDSA P-256 certificate, client
// and server in-process over net.Pipe, so ns/op is the CPU of both ends
// for one handshake. Both ends prefer the same group, so the client's
// first key share is the one chosen (no HelloRetryRequest): the difference
// between the cases is the cost of the key exchange alone.
//
//	go test -run '^$' -bench Handshake -benchtime 1s ./certs/
func BenchmarkHandshake(b *testing.B) {
	srv := certstest.NewServer(b)
	for _, bc := range []struct {
		name   string
		curves []tls.CurveID
		want   tls.CurveID
	}{
		{"default=X25519MLKEM768", nil, tls.X25519MLKEM768},
		{"X25519", []tls.CurveID{tls.X25519}, tls.X25519},
		{"P256", []tls.CurveID{tls.CurveP256}, tls.CurveP256},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sc := certs.ServerConfig(bc.curves)
			sc.Certificates = []tls.Certificate{srv.Cert}
			sc.SessionTicketsDisabled = true
			cc := certs.ClientConfig(bc.curves)
			cc.RootCAs, cc.ServerName = srv.Roots, "localhost"
			if got := pipeHandshake(b, sc, cc); got != bc.want {
				b.Fatalf("negotiated %v, want %v", got, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				pipeHandshake(b, sc, cc)
			}
		})
	}
}

// pipeHandshake runs one handshake over net.Pipe and returns the group.
func pipeHandshake(tb testing.TB, server, client *tls.Config) tls.CurveID {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, server)
	done := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			sc.Close()
		}
		done <- err
	}()
	cli := tls.Client(cc, client)
	cerr := cli.HandshakeContext(ctx)
	if cerr != nil {
		cc.Close()
	}
	if serr := <-done; serr != nil || cerr != nil {
		tb.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	return cli.ConnectionState().CurveID
}
