package auth

import (
	"math/rand/v2"
	"time"
)

// backoff yields jittered exponential delays between min and max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

// next returns a delay drawn from [d/2, d], where d doubles from min up to
// max at each call.
func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}
