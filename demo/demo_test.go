package demo

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	sum, err := Run(context.Background(), Options{
		Agents: 4, Duration: 1500 * time.Millisecond, Interval: 20 * time.Millisecond, PayloadSize: 256 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 || len(sum.Errors) != 0 {
		t.Fatalf("failures: %d %v", sum.Failed, sum.Errors)
	}
	for _, kind := range []string{"policy", "inventory", "patch"} {
		if sum.ByKind[kind] == 0 {
			t.Errorf("no %s request succeeded: %v", kind, sum.ByKind)
		}
	}
	// Every patch is 256 KiB and verified byte for byte by the agent.
	if sum.BytesRelay < sum.ByKind["patch"]*256<<10 {
		t.Errorf("bytes relayed %d < %d patches × 256 KiB", sum.BytesRelay, sum.ByKind["patch"])
	}
	if sum.P50ms <= 0 || sum.P99ms < sum.P50ms || sum.Transport != "tcp" || sum.Agents != 4 {
		t.Errorf("odd summary: %+v", sum)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	sum, err := Run(ctx, Options{Agents: 2, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Run took %v after cancel", d)
	}
	if sum.RequestsOK == 0 {
		t.Fatal("no request succeeded before the cancel")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.01, 10 * time.Millisecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.04 || diff > 0.04 {
			t.Errorf("q%.2f = %v, want %v ±4%%", c.q, got, c.want)
		}
	}
	if h.count() != 1000 {
		t.Fatalf("count %d", h.count())
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
}

func TestBucketsMonotonic(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 7 {
		b := bucket(v)
		if b < prev || lower(b) > v || (b+1 < len(histogram{}.counts) && lower(b+1) <= v) {
			t.Fatalf("value %d in bucket %d [%d, %d)", v, b, lower(b), lower(b+1))
		}
		prev = b
	}
}
