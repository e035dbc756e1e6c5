package tunnel_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
)

func TestBackoffDelay(t *testing.T) {
	const top = 0.999999
	tests := []struct {
		name     string
		min, max time.Duration
		wantMin  time.Duration // effective Min
		wantMax  time.Duration // effective Max
	}{
		{"defaults", 0, 0, 250 * time.Millisecond, 30 * time.Second},
		{"negative means default", -time.Second, -time.Second, 250 * time.Millisecond, 30 * time.Second},
		{"custom", time.Second, 10 * time.Second, time.Second, 10 * time.Second},
		{"max not a power of two of min", 300 * time.Millisecond, 7 * time.Second, 300 * time.Millisecond, 7 * time.Second},
		{"min above max", time.Minute, time.Second, time.Minute, time.Second},
		{"huge max", time.Second, math.MaxInt64, time.Second, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for attempt := range 21 {
				// d = min(Max, Min·2^attempt), computed without overflow.
				d := tt.wantMin
				for range attempt {
					if d > tt.wantMax/2 {
						d = tt.wantMax
						break
					}
					d *= 2
				}
				d = min(d, tt.wantMax)
				for _, r := range []float64{0, 0.5, top} {
					b := tunnel.Backoff{Min: tt.min, Max: tt.max, Rand: func() float64 { return r }}
					got := b.Delay(attempt)
					if got < d/2 || got >= d || got <= 0 {
						t.Errorf("attempt %d, rand %v: %v, want in [%v, %v)", attempt, r, got, d/2, d)
					}
					if r == 0 && got != d/2 {
						t.Errorf("attempt %d, rand 0: %v, want %v", attempt, got, d/2)
					}
				}
			}
		})
	}
}

func TestBackoffDefaultsExactly(t *testing.T) {
	b := tunnel.Backoff{Rand: func() float64 { return 0 }}
	want := []time.Duration{125, 250, 500, 1000, 2000, 4000, 8000, 15000, 15000}
	for i, w := range want {
		if got := b.Delay(i); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if got := b.Delay(-1); got != 125*time.Millisecond {
		t.Errorf("Delay(-1) = %v, want the first delay", got)
	}
	if got := b.Delay(math.MaxInt); got != 15*time.Second {
		t.Errorf("Delay(MaxInt) = %v, want half of Max", got)
	}
}

// TestBackoffNoOverflow: a Max near the largest Duration ("no cap") must
// not let the doubling overflow into a negative or zero delay, which would
// turn a reconnect loop into a storm.
func TestBackoffNoOverflow(t *testing.T) {
	b := tunnel.Backoff{Min: time.Second, Max: math.MaxInt64, Rand: func() float64 { return 0 }}
	prev := time.Duration(0)
	for attempt := range 100 {
		d := b.Delay(attempt)
		if d < prev {
			t.Fatalf("Delay(%d) = %v, less than Delay(%d) = %v", attempt, d, attempt-1, prev)
		}
		prev = d
	}
	if prev != math.MaxInt64/2 {
		t.Errorf("Delay(99) = %v, want half of Max", prev)
	}
}

func TestBackoffDefaultRandSpreads(t *testing.T) {
	b := tunnel.Backoff{Min: time.Second, Max: time.Second}
	seen := map[time.Duration]bool{}
	for range 100 {
		d := b.Delay(3)
		if d < 500*time.Millisecond || d >= time.Second {
			t.Fatalf("delay %v out of [500ms, 1s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays in 100: no jitter?", len(seen))
	}
}

func ExampleBackoff() {
	b := tunnel.Backoff{Min: time.Second, Max: 8 * time.Second, Rand: func() float64 { return 0 }}
	for attempt := range 6 {
		fmt.Print(b.Delay(attempt), " ")
	}
	// Output: 500ms 1s 2s 4s 4s 4s
}
