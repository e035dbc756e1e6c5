package admin

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2026, 5, 14, 12, 0, 0, 0, time.UTC)

func TestSeriesRates(t *testing.T) {
	var c Counters
	s := NewSeries(10*time.Second, 8, func() Counters { return c })
	steps := []struct {
		at   time.Duration
		c    Counters
		want Point // the newest point after this sample
	}{
		{10 * time.Second, Counters{100, 10, 2000, 500}, Point{Requests: 10, Errors: 1, Relayed: 200, Redirected: 50}},
		// A late tick: rates are over the real interval.
		{30 * time.Second, Counters{200, 10, 6000, 500}, Point{Requests: 5, Errors: 0, Relayed: 200, Redirected: 0}},
		// A counter that goes back (a reset) gives 0, never a negative rate,
		{35 * time.Second, Counters{50, 10, 6000, 500}, Point{}},
		// and counts on from its new value.
		{40 * time.Second, Counters{60, 11, 6500, 1000}, Point{Requests: 2, Errors: 0.2, Relayed: 100, Redirected: 100}},
	}
	s.sample(t0)
	if got := s.Points(); len(got) != 0 {
		t.Fatalf("the first sample is a baseline, yet there are points: %+v", got)
	}
	for i, st := range steps {
		c = st.c
		s.sample(t0.Add(st.at))
		pts := s.Points()
		if len(pts) != i+1 {
			t.Fatalf("after sample %d: %d points, want %d", i+1, len(pts), i+1)
		}
		want := st.want
		want.Time = t0.Add(st.at)
		if got := pts[len(pts)-1]; !reflect.DeepEqual(got, want) {
			t.Errorf("at %v: %+v, want %+v", st.at, got, want)
		}
	}
	if s.Interval() != 10*time.Second {
		t.Errorf("Interval %v", s.Interval())
	}
}

// TestSeriesOrder samples a 3-point series k times, before and after it
// wraps around, and wants the newest points, oldest first.
func TestSeriesOrder(t *testing.T) {
	const n = 3
	for k := 0; k <= 8; k++ {
		t.Run(fmt.Sprintf("%d samples", k), func(t *testing.T) {
			var req float64
			s := NewSeries(time.Second, n, func() Counters { return Counters{Requests: req} })
			s.sample(t0)
			for i := 1; i <= k; i++ {
				req += float64(i) // point i has rate i
				s.sample(t0.Add(time.Duration(i) * time.Second))
			}
			var want []Point
			for i := max(1, k-n+1); i <= k; i++ {
				want = append(want, Point{Time: t0.Add(time.Duration(i) * time.Second), Requests: float64(i)})
			}
			got := s.Points()
			if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
				t.Errorf("points %+v, want %+v", got, want)
			}
		})
	}
}

func TestSeriesPointsIsACopy(t *testing.T) {
	var req float64
	s := NewSeries(time.Second, 2, func() Counters { return Counters{Requests: req} })
	s.sample(t0)
	req = 1
	s.sample(t0.Add(time.Second))
	got := s.Points()
	got[0].Requests = 99
	if s.Points()[0].Requests != 1 {
		t.Error("Points shares memory with the series")
	}
}

// TestSeriesRun runs the sampler in a synctest bubble: a baseline at start,
// then a point per interval, and it stops with its context.
func TestSeriesRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reads atomic.Int64
		s := NewSeries(time.Second, 10, func() Counters {
			return Counters{Requests: float64(5 * reads.Add(1))}
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			s.Run(ctx)
			close(done)
		}()
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		pts := s.Points()
		if len(pts) != 3 {
			t.Fatalf("%d points after 3 intervals, want 3: %+v", len(pts), pts)
		}
		for i, p := range pts {
			if p.Requests != 5 || !p.Time.Equal(pts[0].Time.Add(time.Duration(i)*time.Second)) {
				t.Errorf("point %d: %+v, want 5 requests/s, one a second", i, p)
			}
		}
		cancel()
		<-done
		if n := reads.Load(); n != 4 {
			t.Errorf("%d reads, want 4", n)
		}
	})
}

func TestEventsRecent(t *testing.T) {
	ev := func(i int) Event {
		return Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: "refused", Reason: fmt.Sprint("event ", i)}
	}
	const n = 3
	for _, added := range []int{0, 1, 2, 3, 4, 5, 6, 7} {
		t.Run(fmt.Sprintf("%d added", added), func(t *testing.T) {
			e := NewEvents(n)
			for i := range added {
				e.Add(ev(i))
			}
			var want []Event
			for i := added - 1; i >= max(0, added-n); i-- {
				want = append(want, ev(i))
			}
			got := e.Recent()
			if got == nil {
				t.Fatal("Recent is nil; the JSON would be null")
			}
			if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
				t.Errorf("recent %+v, want newest first %+v", got, want)
			}
		})
	}
}
