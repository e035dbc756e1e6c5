package agent

import (
	"context"
	"math/rand/v2"
	"time"
)

// clock is the agent's time: injectable, so that renewal schedules and
// backoffs are tested without sleeping.
type clock struct {
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	rand  func() float64
}

func newClock(cfg Config) clock {
	c := clock{now: cfg.Now, after: cfg.After, rand: cfg.Rand}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	return c
}

// sleep waits d, or until ctx ends. A d of zero or less returns at once.
func (c clock) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.after(d):
		return nil
	}
}

// backoff yields jittered exponential delays: the n-th is drawn from
// [d/2, d] where d = min·2ⁿ, capped at max.
type backoff struct {
	min, max time.Duration
	rand     func() float64
	n        int
}

func (c clock) backoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, rand: c.rand}
}

func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	return d/2 + time.Duration(b.rand()*float64(d/2))
}

func (b *backoff) reset() { b.n = 0 }
