package hist

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.01, 10 * time.Millisecond}} {
		got := h.Quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.04 || diff > 0.04 {
			t.Errorf("q%.2f = %v, want %v ±4%%", c.q, got, c.want)
		}
	}
	if h.Count() != 1000 {
		t.Fatalf("count %d", h.Count())
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
}

func TestBucketsMonotonic(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 7 {
		b := bucket(v)
		if b < prev || lower(b) > v || (b+1 < len(Histogram{}.counts) && lower(b+1) <= v) {
			t.Fatalf("value %d in bucket %d [%d, %d)", v, b, lower(b), lower(b+1))
		}
		prev = b
	}
}
