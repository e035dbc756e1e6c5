package admin

import (
	"math"
	"testing"
	"time"
)

func TestLatencyWindowQuantiles(t *testing.T) {
	w := NewLatencyWindow(time.Minute, 30)
	now := time.Unix(1_000_000, 0)
	for i := 1; i <= 1000; i++ {
		w.Record(now, time.Duration(i)*time.Millisecond) // 1 ms .. 1 s, uniform
	}
	s := w.Summary(now)
	if s.Count != 1000 || s.WindowSeconds != 60 {
		t.Fatalf("summary %+v", s)
	}
	// Buckets double, so allow a bucket's width of error.
	for _, c := range []struct{ got, want float64 }{{s.P50ms, 500}, {s.P99ms, 990}} {
		if math.Abs(c.got-c.want)/c.want > 0.5 {
			t.Errorf("quantile %.1f ms, want about %.0f ms", c.got, c.want)
		}
	}
	if s.P99ms <= s.P50ms {
		t.Errorf("p99 %.1f <= p50 %.1f", s.P99ms, s.P50ms)
	}
}

func TestLatencyWindowForgets(t *testing.T) {
	w := NewLatencyWindow(time.Minute, 30)
	t0 := time.Unix(2_000_000, 0)
	w.Record(t0, 5*time.Second)
	if s := w.Summary(t0.Add(30 * time.Second)); s.Count != 1 {
		t.Fatalf("within the window: count %d, want 1", s.Count)
	}
	if s := w.Summary(t0.Add(61 * time.Second)); s.Count != 0 || s.P99ms != 0 {
		t.Fatalf("after the window: %+v, want empty", s)
	}
	// A slot reused by a later period starts from zero.
	w.Record(t0.Add(60*time.Second), time.Millisecond)
	if s := w.Summary(t0.Add(60 * time.Second)); s.Count != 1 || s.P99ms > 1 {
		t.Fatalf("reused slot: %+v", s)
	}
}
