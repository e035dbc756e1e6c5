package agent

import (
	"sync"
	"testing"
	"time"
)

// hang bounds every wait of these tests: they assert outcomes, not speed,
// and a hang must fail rather than stall the run.
const hang = 10 * time.Second

// fakeClock is an injected clock: Now stands still unless the test moves
// it, and every wait is handed to the test, which checks its duration and
// fires it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, waits: make(chan fakeWait, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(now time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	w := fakeWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// next returns the next wait the code under test began.
func (c *fakeClock) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(hang):
		t.Fatal("no wait began")
		return fakeWait{}
	}
}

// expect takes the next wait, checks its duration and fires it.
func (c *fakeClock) expect(t *testing.T, want time.Duration) {
	t.Helper()
	w := c.next(t)
	if w.d != want {
		t.Fatalf("waited %v, want %v", w.d, want)
	}
	w.fire <- c.Now()
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		name string
		rand float64
		want []time.Duration
	}{
		{"low jitter", 0, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}},
		{"high jitter", 1, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &backoff{min: time.Second, max: 8 * time.Second, rand: func() float64 { return tc.rand }}
			for i, want := range tc.want {
				if got := b.next(); got != want {
					t.Fatalf("delay %d = %v, want %v", i, got, want)
				}
			}
			b.reset()
			if got := b.next(); got != tc.want[0] {
				t.Fatalf("after reset: %v, want %v", got, tc.want[0])
			}
		})
	}
}
