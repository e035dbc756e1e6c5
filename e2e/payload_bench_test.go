package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
)

// BenchmarkRelayBudget measures how close relayed payload traffic comes to
// the tenant's bandwidth budget, through the whole path, with agents that
// honour Retry-After. "paced" has a slot for every agent (16 downloads of
// 8 MiB at once): the token bucket alone sets the pace. "admission" has 64
// agents for 8 slots: refusals, queueing and retries play too. It reports
// the achieved rate as a fraction of the budget (above 1 would mean the
// budget leaked, beyond its burst); budget=0 is the path without a
// bandwidth limit, for comparison in the same run:
//
//	go test ./e2e -run '^$' -bench RelayBudget -benchtime 1x -count 3
func BenchmarkRelayBudget(b *testing.B) {
	for _, tc := range []struct {
		name          string
		agents, slots int
		rate          int64
	}{
		{"paced", 16, 16, 32 << 20}, {"paced", 16, 16, 128 << 20}, {"paced", 16, 16, 0},
		{"admission", 64, 8, 32 << 20}, {"admission", 64, 8, 128 << 20},
	} {
		b.Run(fmt.Sprintf("%s/budget=%dMiB/s", tc.name, tc.rate>>20), func(b *testing.B) {
			const size = 8 << 20
			data := patchBytes(size)
			want := sha256.Sum256(data)
			ten := newTenant(b, "acme")
			w := startGateway(b, nil, ten)
			cs := startCore(b, &payloadCore{data: data})
			w.startConnector(b, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: cs.addr()}},
				func(c *connector.Config) {
					c.Payloads.Relay = connector.RelayConfig{MaxConcurrent: tc.slots, BytesPerSecond: tc.rate,
						PathPrefixes: []string{"/patches/"}, RetryAfter: time.Second}
				})
			w.waitServed(b, "acme", 1)
			clients := make([]*http.Client, tc.agents)
			for i := range clients {
				cert := certstest.Agent(b, ten.ca, fmt.Sprintf("pc-%04d", i))
				clients[i] = w.agent(&cert, false)
			}
			b.ResetTimer()
			var total time.Duration
			for b.Loop() {
				var received atomic.Int64
				errs := make([]error, tc.agents)
				start := time.Now()
				var wg sync.WaitGroup
				for i, c := range clients {
					wg.Go(func() {
						_, errs[i] = fetchHonouringRetryAfter(context.Background(), c, w.url(patchPath), want, &received)
					})
				}
				wg.Wait()
				total += time.Since(start)
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			achieved := float64(b.N) * float64(tc.agents) * size / total.Seconds()
			b.ReportMetric(achieved/(1<<20), "MiB/s")
			if tc.rate > 0 {
				b.ReportMetric(achieved/float64(tc.rate), "of-budget")
			}
		})
	}
}
