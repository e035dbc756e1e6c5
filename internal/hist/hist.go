package hist

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Histogram records durations in log-linear buckets. The zero value is
// ready to use and safe for concurrent use.
type Histogram struct {
	mu     sync.Mutex
	counts [64 * subBuckets]uint64
	n      uint64
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	o.mu.Lock()
	counts, n := o.counts, o.n
	o.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range counts {
		h.counts[i] += c
	}
	h.n += n
}

const subBits = 5
const subBuckets = 1 << subBits

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	i := bucket(uint64(max(d, 0)))
	h.mu.Lock()
	h.counts[i]++
	h.n++
	h.mu.Unlock()
}

func bucket(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits // ≥ 1
	sub := int(v>>(exp-1)) & (subBuckets - 1)
	return exp*subBuckets + sub
}

// lower returns the smallest value of bucket i.
func lower(i int) uint64 {
	exp, sub := i/subBuckets, uint64(i%subBuckets)
	if exp == 0 {
		return sub
	}
	return (subBuckets | sub) << (exp - 1)
}

// Quantile returns the duration below which a fraction q of the samples
// lie (the middle of its bucket).
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= max(rank, 1) {
			lo, hi := lower(i), lower(i+1)
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return 0
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
