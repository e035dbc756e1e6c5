package tunnel_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

func benchHeader() *tunnel.Header {
	return &tunnel.Header{
		Kind: tunnel.KindConnect, Service: "remote-control", DeviceID: "8f14e45f-ceea-467a-9575-2b6ab2d8a1c3",
		CertSHA256: digest(), ClientAddr: "203.0.113.77:51234",
	}
}

func BenchmarkHeaderEncode(b *testing.B) {
	h := benchHeader()
	buf, err := h.AppendBinary(make([]byte, 0, 256))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = h.AppendBinary(buf[:0])
	}
}

func BenchmarkHeaderDecode(b *testing.B) {
	enc, err := benchHeader().AppendBinary(nil)
	if err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(enc)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(enc)
		if _, err := tunnel.ReadHeader(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamOpenClose measures one relayed connection's overhead:
// open, header, reply, close, over yamux+TLS on loopback.
func BenchmarkStreamOpenClose(b *testing.B) {
	client, server := tunneltest.Pair(b, tunnel.Config{})
	serve(b, client, func(st tunnel.Stream) {
		if _, err := tunnel.ReadRequest(st, hang); err != nil {
			return
		}
		if tunnel.Answer(st, &tunnel.Reply{}, hang) == nil {
			io.Copy(io.Discard, st)
		}
	})
	h := benchHeader()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		st, err := tunnel.OpenRelay(ctx, server, h, hang)
		if err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
}

const benchWrite = 64 << 10

// sink reads c to EOF on its own goroutine and reports the count.
func sink(c io.Reader) <-chan result[int64] {
	return async(func() (int64, error) { return io.Copy(io.Discard, c) })
}

// pushBytes writes b.N chunks of benchWrite bytes to w, half-closes it and
// waits until the receiver has them all.
func pushBytes(b *testing.B, w io.Writer, closeWrite func() error, got <-chan result[int64]) {
	buf := make([]byte, benchWrite)
	b.SetBytes(benchWrite)
	// A counted loop, not b.Loop: the timer must run until the receiver
	// has the last byte.
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := closeWrite(); err != nil {
		b.Fatal(err)
	}
	n, err := get(b, got, "receiver")
	b.StopTimer()
	if err != nil || n != int64(b.N)*benchWrite {
		b.Fatalf("received %d bytes, %v; want %d", n, err, int64(b.N)*benchWrite)
	}
}

// BenchmarkStreamThroughput moves bytes one way on one tunnel stream;
// compare with BenchmarkTLSThroughput, the same writes on a plain TLS
// connection.
func BenchmarkStreamThroughput(b *testing.B) {
	for _, w := range []struct {
		name   string
		window int
	}{{"window=256KiB", 256 << 10}, {"window=default", 0}} {
		b.Run(w.name, func(b *testing.B) {
			client, server := tunneltest.Pair(b, tunnel.Config{StreamWindow: w.window})
			a, s := streamPair(b, client, server)
			pushBytes(b, a, a.CloseWrite, sink(s))
		})
	}
}

func BenchmarkTLSThroughput(b *testing.B) {
	srvConf, cliConf := tunneltest.TLSConfigs(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := async(func() (*tls.Conn, error) {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, srvConf)
		return tc, tc.Handshake()
	})
	c, err := tls.Dial("tcp", ln.Addr().String(), cliConf)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := get(b, accepted, "accept")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pushBytes(b, c, c.CloseWrite, sink(s))
}
