package tunneltest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
)

// Pair returns the client (connector) and server (gateway) ends of a
// yamux-over-TLS session on a loopback TCP connection. The client end is
// made by tunnel.Dial, so it negotiates the tunnel ALPN. Both are closed
// when the test ends.
func Pair(tb testing.TB, cfg tunnel.Config) (client, server tunnel.Session) {
	tb.Helper()
	srvConf, cliConf := TLSConfigs(tb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		s   tunnel.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{nil, err}
			return
		}
		tc := tls.Server(c, srvConf)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			done <- result{nil, err}
			return
		}
		tc.SetDeadline(time.Time{})
		s, err := tunnel.NewYamuxServer(tc, cfg)
		if err != nil {
			tc.Close()
		}
		done <- result{s, err}
	}()
	client, err = tunnel.Dial(context.Background(), tunnel.DialConfig{
		Address: ln.Addr().String(),
		TLS:     cliConf,
		Session: cfg,
	})
	if err != nil {
		ln.Close()
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

// TLSConfigs returns a TLS 1.3 server configuration with a fresh
// self-signed certificate for localhost, 127.0.0.1 and ::1 that offers the
// tunnel ALPN, and a client configuration that trusts it and offers the
// same ALPN.
func TLSConfigs(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	cert, leaf := selfSigned(tb)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{tunnel.ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		RootCAs:    roots,
		ServerName: "localhost",
		NextProtos: []string{tunnel.ALPN},
		MinVersion: tls.VersionTLS13,
	}
	return server, client
}

func selfSigned(tb testing.TB) (tls.Certificate, *x509.Certificate) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "tunneltest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}
