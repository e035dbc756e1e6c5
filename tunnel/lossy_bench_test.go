package tunnel_test

import (
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
)

// The lossy benchmarks compare the transports on a link that drops
// packets. They run only inside the network namespace that
// scripts/lossy-bench.sh makes (random drop with nftables, MTU 1500 on
// loopback), which sets SEKISHO_LOSSY to the drop rate it applied.

func lossy(b *testing.B) string {
	rate := os.Getenv("SEKISHO_LOSSY")
	if rate == "" {
		b.Skip("run through scripts/lossy-bench.sh (needs root, nftables, a network namespace)")
	}
	return rate
}

// BenchmarkLossyThroughput moves data on one stream.
func BenchmarkLossyThroughput(b *testing.B) {
	rate := lossy(b)
	for _, tr := range transports {
		b.Run(tr.name+"/drop="+rate, func(b *testing.B) {
			client, server := tr.pair(b, tunnel.Config{})
			serve(b, server, func(st tunnel.Stream) { io.Copy(io.Discard, st); st.Close() })
			st, err := client.OpenStream(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := st.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLossyHeadOfLine measures small round trips on one stream while
// another stream of the same session moves bulk data: over TCP a lost
// segment stalls every stream behind it, over QUIC only its own.
func BenchmarkLossyHeadOfLine(b *testing.B) {
	rate := lossy(b)
	for _, tr := range transports {
		b.Run(tr.name+"/drop="+rate, func(b *testing.B) {
			client, server := tr.pair(b, tunnel.Config{})
			serve(b, server, func(st tunnel.Stream) { io.Copy(st, st); st.Close() })
			bulk, err := client.OpenStream(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() { io.Copy(io.Discard, bulk) })
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						bulk.CloseWrite()
						return
					default:
					}
					if _, err := bulk.Write(buf); err != nil {
						return
					}
				}
			})
			small, err := client.OpenStream(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			msg, back := make([]byte, 200), make([]byte, 200)
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := small.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(small, back); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			close(stop)
			small.Close()
			bulk.Close()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
		})
	}
}
