package demo

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// histogram records durations in log-linear buckets: 32 sub-buckets per
// power of two, so a percentile is within ~3% whatever the run's length,
// in constant memory.
type histogram struct {
	mu     sync.Mutex
	counts [64 * subBuckets]uint64
	n      uint64
}

const subBits = 5
const subBuckets = 1 << subBits

func (h *histogram) record(d time.Duration) {
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

// quantile returns the duration below which a fraction q of the samples
// lie (the middle of its bucket).
func (h *histogram) quantile(q float64) time.Duration {
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

func (h *histogram) count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
