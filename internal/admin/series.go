package admin

import (
	"context"
	"sync"
	"time"
)

// Point is one sample of a role's traffic, as rates over the interval
// before it.
type Point struct {
	Time       time.Time `json:"t"`
	Requests   float64   `json:"requests_per_second"`
	Errors     float64   `json:"errors_per_second"`
	Relayed    float64   `json:"relayed_bytes_per_second"`
	Redirected float64   `json:"redirected_bytes_per_second"`
}

// Counters are the monotonic totals a Series samples.
type Counters struct {
	Requests, Errors, Relayed, Redirected float64
}

// Series keeps the last N samples of a role's counters, turned into rates,
// for the status page's plot. Memory is fixed: N points.
type Series struct {
	interval time.Duration
	read     func() Counters
	mu       sync.Mutex
	points   []Point
	next     int
	full     bool
	last     Counters
	lastT    time.Time
}

// NewSeries samples read every interval and keeps n points.
func NewSeries(interval time.Duration, n int, read func() Counters) *Series {
	return &Series{interval: interval, read: read, points: make([]Point, n)}
}

// Run samples until ctx ends.
func (s *Series) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// sample records the rates since the previous sample.
func (s *Series) sample(now time.Time) {
	c := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastT.IsZero() {
		dt := now.Sub(s.lastT).Seconds()
		rate := func(a, b float64) float64 { return max(a-b, 0) / dt }
		s.points[s.next] = Point{Time: now, Requests: rate(c.Requests, s.last.Requests),
			Errors: rate(c.Errors, s.last.Errors), Relayed: rate(c.Relayed, s.last.Relayed),
			Redirected: rate(c.Redirected, s.last.Redirected)}
		s.next = (s.next + 1) % len(s.points)
		s.full = s.full || s.next == 0
	}
	s.last, s.lastT = c, now
}

// Points returns the samples, oldest first.
func (s *Series) Points() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]Point(nil), s.points[:s.next]...)
	}
	return append(append([]Point(nil), s.points[s.next:]...), s.points[:s.next]...)
}

// Interval is the time between samples.
func (s *Series) Interval() time.Duration { return s.interval }

// Event is one notable thing (a refused peer, a reload) for the page.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	Tenant string    `json:"tenant,omitempty"`
	Remote string    `json:"remote_addr,omitempty"`
}

// Events keeps the last N events.
type Events struct {
	mu   sync.Mutex
	buf  []Event
	next int
	full bool
}

// NewEvents keeps the last n events.
func NewEvents(n int) *Events { return &Events{buf: make([]Event, n)} }

// Add records an event.
func (e *Events) Add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf[e.next] = ev
	e.next = (e.next + 1) % len(e.buf)
	e.full = e.full || e.next == 0
}

// Recent returns the events, newest first.
func (e *Events) Recent() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.next
	if e.full {
		n = len(e.buf)
	}
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, e.buf[(e.next-i+len(e.buf))%len(e.buf)])
	}
	return out
}
