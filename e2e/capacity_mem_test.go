package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
)

// BenchmarkIdleMemory measures what one idle agent costs the server, as
// the slope between two counts of agents held by a child process: heap
// objects plus goroutine stacks (runtime/metrics, after a collection) per
// connection, and the process's RSS per connection next to it. Each
// sub-benchmark measures the bare Go baseline and the gateway in the same
// run. Run it once:
//
//	go test ./e2e -run '^$' -bench IdleMemory -benchtime 1x
//
// With SEKISHO_CAPACITY_HEAP=DIR set, it writes a heap profile of each arm
// at the larger count to DIR/heap-<mode>.pprof (go tool pprof
// -sample_index=inuse_space) to see where the bytes are.
func BenchmarkIdleMemory(b *testing.B) {
	const n1, n2 = 2000, 4000
	if os.Getenv(heapEnv) != "" {
		runtime.MemProfileRate = 4096
		defer func() { runtime.MemProfileRate = 512 << 10 }()
	}
	for _, arm := range []struct {
		name, bare, agents string
	}{{"h1", "tls", "h1"}, {"h2", "tls", "h2"}, {"h3", "quic", "h3"}} {
		b.Run(arm.name, func(b *testing.B) {
			acme := newTenant(b, "acme")
			srv := certstest.NewServer(b)
			var bare *capacityTarget
			if arm.bare == "quic" {
				bare = bareQUICServer(b, srv, acme.ca.Cert)
			} else {
				bare = bareTLSServer(b, srv, acme.ca.Cert, nil)
			}
			base := idleSlope(b, childSpec{Mode: arm.bare, Target: bare.addrFor(arm.bare), Tenant: "acme",
				Dir: writeChildPKI(b, acme.ca, srv.CA.Cert)}, n1, n2)

			gw, w := sekishoTarget(b, acme, nil)
			sek := idleSlope(b, childSpec{Mode: arm.agents, Target: gw.addrFor(arm.agents), Tenant: "acme", Path: "/small",
				Dir: writeChildPKI(b, acme.ca, w.srv.CA.Cert)}, n1, n2)

			b.ReportMetric(base.heap, "bare-B/conn")
			b.ReportMetric(sek.heap, "sekisho-B/conn")
			b.ReportMetric(sek.heap/base.heap, "ratio")
			b.ReportMetric(base.stacks, "bare-stack-B/conn")
			b.ReportMetric(sek.stacks, "sekisho-stack-B/conn")
			b.ReportMetric(base.rss, "bare-rss-B/conn")
			b.ReportMetric(sek.rss, "sekisho-rss-B/conn")
			b.ReportMetric(base.goroutines, "bare-goroutines/conn")
			b.ReportMetric(sek.goroutines, "sekisho-goroutines/conn")
			b.ReportMetric(sek.heap*100_000/(1<<30), "sekisho-GiB/100k")
		})
	}
}

func (t *capacityTarget) addrFor(mode string) string {
	if mode == "quic" || mode == "h3" {
		return t.udp
	}
	return t.tcp
}

// slope is what one more idle connection costs.
type slope struct{ heap, stacks, rss, goroutines float64 }

// idleSlope connects n1 agents, measures, connects up to n2, measures
// again, then lets the agents go.
func idleSlope(b *testing.B, spec childSpec, n1, n2 int) slope {
	b.Helper()
	c := startChild(b, spec)
	if got := c.do(b, fmt.Sprintf("connect %d", n1)); got != n1 {
		b.Fatalf("%s: %d agents held, want %d", spec.Mode, got, n1)
	}
	m1 := settledMemory()
	if got := c.do(b, fmt.Sprintf("connect %d", n2-n1)); got != n2 {
		b.Fatalf("%s: %d agents held, want %d", spec.Mode, got, n2)
	}
	m2 := settledMemory()
	if dir := os.Getenv(heapEnv); dir != "" {
		writeHeapProfile(b, filepath.Join(dir, "heap-"+spec.Mode+".pprof"))
	}
	c.stop(b)
	n := float64(n2 - n1)
	return slope{
		heap:       float64(m2.heap-m1.heap) / n,
		stacks:     float64(m2.stacks-m1.stacks) / n,
		rss:        float64(m2.rss-m1.rss) / n,
		goroutines: float64(m2.goroutines-m1.goroutines) / n,
	}
}

const heapEnv = "SEKISHO_CAPACITY_HEAP"

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// memory is a snapshot of what the process holds.
// heap counts heap objects and goroutine stacks; stacks is the latter.
type memory struct{ heap, stacks, rss, goroutines int64 }

// settledMemory waits for the connections to go idle, collects garbage,
// returns freed pages to the system, and reads what is left.
func settledMemory() memory {
	time.Sleep(2 * time.Second)
	runtime.GC()
	debug.FreeOSMemory()
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
	}
	metrics.Read(samples)
	return memory{
		heap:       int64(samples[0].Value.Uint64() + samples[1].Value.Uint64()),
		stacks:     int64(samples[1].Value.Uint64()),
		rss:        rssBytes(),
		goroutines: int64(runtime.NumGoroutine()),
	}
}

// rssBytes is the process's resident set size, or 0 where /proc is not.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
