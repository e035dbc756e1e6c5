package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// The benchmarks put the whole path (agent -> gateway -> tunnel ->
// connector -> core) next to its baseline, the same client talking TLS
// straight to the same core, in one run. Compare within a run only.

// benchCore serves /big (n bytes) and /small (a short JSON answer).
func benchCore(n int64) http.Handler {
	body := []byte(`{"device":"pc","check_interval":"15m","patches":[]}`)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 64<<10)
		for left := n; left > 0; left -= int64(len(buf)) {
			rw.Write(buf[:min(left, int64(len(buf)))])
		}
	})
	mux.HandleFunc("/small", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.Write(body)
	})
	return mux
}

// plainCore serves benchCore(size) over plain HTTP and returns its
// address. Unlike startCore it keeps nothing of what it serves, like the
// direct arm's server: a core that cloned every request would charge the
// sekisho arm with allocations and garbage of the test's own.
func plainCore(tb testing.TB, size int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &http.Server{Handler: benchCore(size), ReadHeaderTimeout: hangGuard}
	go hs.Serve(ln)
	tb.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// paths gives, for one benchmark, the sekisho path and the direct path to
// the same core, each as a function returning a fresh agent client.
type paths struct {
	sekisho, direct string // base URLs
	client          func(direct bool) *http.Client
}

func setupPaths(b *testing.B, size int64, transport string) *paths {
	b.Helper()
	acme := newTenant(b, "acme")
	tunnels, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	w := startGateway(b, func(c *gateway.Config) { c.QUIC.TunnelConn = tunnels }, acme)
	core := plainCore(b, size)
	w.startConnector(b, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core}},
		func(c *connector.Config) {
			c.Transport = transport
			c.Gateways[0].QUICAddress = tunnels.LocalAddr().String()
		})
	w.waitServed(b, "acme", 2)

	// The direct baseline: the same core behind TLS with the same policy
	// (TLS 1.3, client certificate required).
	srv := certstest.NewServer(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(acme.ca.Cert)
	direct := &http.Server{Handler: benchCore(size), TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{srv.Cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MinVersion: tls.VersionTLS13,
	}}
	go direct.ServeTLS(ln, "", "")
	b.Cleanup(func() { direct.Close() })

	var n atomic.Int64
	return &paths{
		sekisho: w.url(""), direct: "https://" + ln.Addr().String(),
		client: func(d bool) *http.Client {
			cert := certstest.Agent(b, acme.ca, "pc-"+strconv.FormatInt(n.Add(1), 10))
			roots := w.srv.Roots
			if d {
				roots = srv.Roots
			}
			tr := &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert},
				NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS13,
			}, MaxIdleConnsPerHost: 4}
			b.Cleanup(tr.CloseIdleConnections)
			return &http.Client{Transport: tr}
		},
	}
}

// BenchmarkDownload moves large bodies on 1 and 16 concurrent streams,
// direct and through the whole path over each tunnel transport.
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	paths := map[string]*paths{"tcp": setupPaths(b, size, "tcp"), "quic": setupPaths(b, size, "quic")}
	for _, streams := range []int{1, 16} {
		for _, arm := range []struct {
			name, tunnel string
			direct       bool
		}{{"direct-tls", "tcp", true}, {"sekisho-tcp", "tcp", false}, {"sekisho-quic", "quic", false}} {
			b.Run(fmt.Sprintf("streams=%d/%s", streams, arm.name), func(b *testing.B) {
				download(b, paths[arm.tunnel], arm.direct, streams, size)
			})
		}
	}
}

// download runs b.N downloads of size on streams agents in parallel.
func download(b *testing.B, p *paths, direct bool, streams int, size int64) {
	base := p.sekisho
	if direct {
		base = p.direct
	}
	clients := make([]*http.Client, streams)
	for i := range clients {
		clients[i] = p.client(direct)
	}
	b.SetBytes(size)
	cpu := startCPU()
	one := func(c *http.Client, buf []byte) bool {
		resp, err := c.Get(base + "/big")
		if err != nil {
			b.Error(err)
			return false
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
		resp.Body.Close()
		if err != nil || n != size {
			b.Errorf("%d bytes, %v", n, err)
			return false
		}
		return true
	}
	b.ResetTimer()
	if streams == 1 {
		buf := make([]byte, 256<<10)
		for b.Loop() {
			if !one(clients[0], buf) {
				return
			}
		}
	} else {
		var next atomic.Int64
		b.SetParallelism((streams + 1) / 2) // × GOMAXPROCS (2) goroutines
		b.RunParallel(func(pb *testing.PB) {
			c := clients[int(next.Add(1)-1)%streams]
			buf := make([]byte, 256<<10)
			for pb.Next() && one(c, buf) {
			}
		})
	}
	// CPU per byte is steadier than MB/s on a shared machine.
	b.ReportMetric(float64(cpu.elapsed())/float64(int64(b.N)*size), "cpu-ns/B")
}

// BenchmarkSmallRequests runs 64 concurrent agents, each on its own
// keep-alive connection, issuing small requests back to back.
func BenchmarkSmallRequests(b *testing.B) {
	const agents = 64
	p := setupPaths(b, 0, "tcp")
	for _, arm := range []struct {
		name   string
		direct bool
	}{{"direct-tls", true}, {"sekisho", false}} {
		b.Run(arm.name, func(b *testing.B) {
			base := p.sekisho
			if arm.direct {
				base = p.direct
			}
			clients := make([]*http.Client, agents)
			for i := range clients {
				clients[i] = p.client(arm.direct)
				get(b, clients[i], base+"/small") // handshake outside the timing
			}
			var next atomic.Int64
			cpu := startCPU()
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism((agents + 1) / 2) // GOMAXPROCS × this = agents on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				c := clients[int(next.Add(1)-1)%agents]
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					get(b, c, base+"/small")
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(cpu.elapsed())/float64(len(lat))/1e3, "cpu-us/req")
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		})
	}
}

func get(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("status %d", resp.StatusCode)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuClock measures the process's CPU time (user + system), all roles
// and the benchmark's own client included.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) elapsed() time.Duration { return processCPU() - c.start }
