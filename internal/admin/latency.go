package admin

import (
	"math"
	"sync"
	"time"
)

// latencyBounds are the upper bounds of the latency buckets, in seconds:
// 0.25 ms to ~33 s, doubling.
var latencyBounds = func() []float64 {
	var b []float64
	for v := 0.00025; v < 40; v *= 2 {
		b = append(b, v)
	}
	return b
}()

// LatencyWindow keeps request durations of the last window in rotating
// slots of fixed buckets, for a status page's p50/p99. Memory is fixed.
type LatencyWindow struct {
	slot  time.Duration
	mu    sync.Mutex
	slots []latencySlot
}

type latencySlot struct {
	epoch  int64 // which slot period the counts belong to
	counts []uint64
}

// NewLatencyWindow covers window with n slots.
func NewLatencyWindow(window time.Duration, n int) *LatencyWindow {
	w := &LatencyWindow{slot: window / time.Duration(n), slots: make([]latencySlot, n)}
	for i := range w.slots {
		w.slots[i].counts = make([]uint64, len(latencyBounds)+1)
	}
	return w
}

// Record adds one duration observed at now.
func (w *LatencyWindow) Record(now time.Time, d time.Duration) {
	epoch := now.UnixNano() / int64(w.slot)
	i := len(latencyBounds)
	s := d.Seconds()
	for j, b := range latencyBounds {
		if s <= b {
			i = j
			break
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	sl := &w.slots[epoch%int64(len(w.slots))]
	if sl.epoch != epoch {
		sl.epoch = epoch
		clear(sl.counts)
	}
	sl.counts[i]++
}

// Summary returns the count and the 50th and 99th percentiles (ms) of the
// window ending at now.
func (w *LatencyWindow) Summary(now time.Time) Latency {
	epoch := now.UnixNano() / int64(w.slot)
	total := make([]uint64, len(latencyBounds)+1)
	var n uint64
	w.mu.Lock()
	for _, sl := range w.slots {
		if epoch-sl.epoch >= int64(len(w.slots)) || sl.epoch > epoch {
			continue
		}
		for i, c := range sl.counts {
			total[i] += c
			n += c
		}
	}
	w.mu.Unlock()
	window := w.slot * time.Duration(len(w.slots))
	return Latency{WindowSeconds: window.Seconds(), Count: n,
		P50ms: quantile(total, n, 0.50) * 1000, P99ms: quantile(total, n, 0.99) * 1000}
}

// quantile interpolates within the bucket holding rank q·n.
func quantile(counts []uint64, n uint64, q float64) float64 {
	if n == 0 {
		return 0
	}
	rank := math.Max(1, math.Ceil(q*float64(n)))
	var seen float64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := 0.0, latencyBounds[len(latencyBounds)-1]*2
			if i > 0 {
				lo = latencyBounds[i-1]
			}
			if i < len(latencyBounds) {
				hi = latencyBounds[i]
			}
			return lo + (hi-lo)*(rank-seen)/float64(c)
		}
		seen += float64(c)
	}
	return 0
}
