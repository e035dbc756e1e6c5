package tunnel

import (
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential growth from Min to Max,
// with jitter so that many connectors (or agents) that lost the same
// gateway do not come back in one herd. The zero value means the defaults.
type Backoff struct {
	// Min is the first delay. Default 250ms.
	Min time.Duration
	// Max caps the delay. Default 30s.
	Max time.Duration
	// Rand returns a number in [0, 1); tests inject it. Default math/rand.
	Rand func() float64
}

// Delay returns the wait before retry number attempt (0 for the first
// retry): a uniformly random duration in [d/2, d), where d is
// min(Max, Min·2^attempt). Half of d is kept so that a retry never comes
// at once; the other half spreads the herd.
func (b Backoff) Delay(attempt int) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 250 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		if d > hi/2 {
			d = hi // doubling would pass Max, or overflow
			break
		}
		d *= 2
	}
	d = min(d, hi)
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return d/2 + time.Duration(r()*float64(d/2))
}
