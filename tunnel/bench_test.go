package tunnel_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
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
// open, header, reply, close, over each transport on loopback.
func BenchmarkStreamOpenClose(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			client, server := tr.pair(b, tunnel.Config{})
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
		})
	}
}

const benchWrite = 64 << 10

// sink reads c to EOF on its own goroutine and reports the count.
func sink(c io.Reader) <-chan tunneltest.Result[int64] {
	return tunneltest.Async(func() (int64, error) { return io.Copy(io.Discard, c) })
}

// halfWriter is the sending end of a stream or connection.
type halfWriter interface {
	io.Writer
	CloseWrite() error
}

// pushBytes writes b.N chunks of benchWrite bytes, spread over ws, each
// from its own goroutine; half-closes each and waits until the receivers
// have them all. The figure is the sum over all of ws.
func pushBytes(b *testing.B, ws []halfWriter, got []<-chan tunneltest.Result[int64]) {
	buf := make([]byte, benchWrite)
	b.SetBytes(benchWrite)
	// A counted loop, not b.Loop: the timer must run until the receivers
	// have the last byte.
	b.ResetTimer()
	errs := make(chan error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		chunks := b.N / len(ws)
		if i < b.N%len(ws) {
			chunks++
		}
		wg.Go(func() {
			for range chunks {
				if _, err := w.Write(buf); err != nil {
					errs <- err
					return
				}
			}
			errs <- w.CloseWrite()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	var total int64
	for _, g := range got {
		n, err := tunneltest.Await(b, g, "receiver")
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	b.StopTimer()
	if total != int64(b.N)*benchWrite {
		b.Fatalf("received %d bytes; want %d", total, int64(b.N)*benchWrite)
	}
}

// benchStreams are the stream counts of the throughput benchmarks: one
// stream alone, and many sharing one session (or, for TLS, as many
// connections).
var benchStreams = []int{1, 16}

// BenchmarkStreamThroughput moves bytes one way over tunnel streams of one
// session, per transport and stream window; compare with
// BenchmarkTLSThroughput, the same writes on plain TLS connections.
func BenchmarkStreamThroughput(b *testing.B) {
	rows := []struct {
		name string
		pair func(testing.TB, tunnel.Config) (tunnel.Session, tunnel.Session)
		cfg  tunnel.Config
	}{
		{"tcp/window=256KiB", tunneltest.Pair, tunnel.Config{StreamWindow: 256 << 10}},
		{"tcp/window=default", tunneltest.Pair, tunnel.Config{}},
		{"quic/window=default", tunneltest.QUICPair, tunnel.Config{}},
	}
	for _, r := range rows {
		for _, n := range benchStreams {
			b.Run(fmt.Sprintf("%s/streams=%d", r.name, n), func(b *testing.B) {
				client, server := r.pair(b, r.cfg)
				var ws []halfWriter
				var got []<-chan tunneltest.Result[int64]
				for range n {
					a, s := streamPair(b, client, server)
					ws, got = append(ws, a), append(got, sink(s))
				}
				pushBytes(b, ws, got)
			})
		}
	}
}

func BenchmarkTLSThroughput(b *testing.B) {
	for _, n := range benchStreams {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			var ws []halfWriter
			var got []<-chan tunneltest.Result[int64]
			for range n {
				c, s := tlsPair(b)
				ws, got = append(ws, c), append(got, sink(s))
			}
			pushBytes(b, ws, got)
		})
	}
}

// tlsPair returns the two ends of a TLS connection on loopback, closed
// when the benchmark ends.
func tlsPair(b *testing.B) (client, server *tls.Conn) {
	b.Helper()
	srvConf, cliConf := tunneltest.TLSConfigs(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := tunneltest.Async(func() (*tls.Conn, error) {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, srvConf)
		return tc, tc.Handshake()
	})
	client, err = tls.Dial("tcp", ln.Addr().String(), cliConf)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	server, err = tunneltest.Await(b, accepted, "accept")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { server.Close() })
	return client, server
}
