package payload

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// MinBurst is the smallest token bucket burst: one copy buffer's worth,
// so that a paced read is never larger than the bucket.
const MinBurst = 64 << 10

// BudgetConfig bounds what crosses the tunnel as payload.
type BudgetConfig struct {
	// MaxConcurrent is the number of payload downloads at once; 0: no
	// limit.
	MaxConcurrent int
	// BytesPerSecond paces payload and opaque (CONNECT) bytes leaving the
	// LAN, all streams together; 0: no limit.
	BytesPerSecond int64
	// Burst is the token bucket's depth in bytes. Default a tenth of a
	// second's worth, at least MinBurst.
	Burst int64
}

func (c BudgetConfig) burst() int {
	b := c.Burst
	if b <= 0 {
		b = c.BytesPerSecond / 10
	}
	return int(max(b, MinBurst))
}

// Budget enforces a BudgetConfig. Its settings can change while it is in
// use (Set); downloads in flight keep their slots.
type Budget struct {
	mu      sync.Mutex
	max     int
	active  int
	freed   chan struct{} // closed (and replaced) when a slot is released
	limiter *rate.Limiter // nil: unlimited
	refused atomic.Int64
}

// NewBudget returns a budget with cfg.
func NewBudget(cfg BudgetConfig) *Budget {
	b := &Budget{freed: make(chan struct{})}
	b.Set(cfg)
	return b
}

// Set changes the budget's settings.
func (b *Budget) Set(cfg BudgetConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.max = cfg.MaxConcurrent
	switch {
	case cfg.BytesPerSecond <= 0:
		b.limiter = nil
	case b.limiter == nil:
		b.limiter = rate.NewLimiter(rate.Limit(cfg.BytesPerSecond), cfg.burst())
	default:
		b.limiter.SetLimit(rate.Limit(cfg.BytesPerSecond))
		b.limiter.SetBurst(cfg.burst())
	}
}

// Acquire takes a download slot. It returns ok false, without waiting,
// when all are taken; release must be called once the download ends.
func (b *Budget) Acquire() (release func(), ok bool) {
	release, ok, _ = b.tryAcquire()
	if !ok {
		b.refused.Add(1)
	}
	return release, ok
}

// AcquireWait is Acquire that waits up to wait (or until ctx ends) for a
// slot to be released. A short wait keeps the slots busy between one
// download and the next agent's retry, without holding agents for long.
func (b *Budget) AcquireWait(ctx context.Context, wait time.Duration) (release func(), ok bool) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		release, ok, freed := b.tryAcquire()
		if ok {
			return release, true
		}
		select {
		case <-freed:
		case <-timer.C:
			b.refused.Add(1)
			return nil, false
		case <-ctx.Done():
			b.refused.Add(1)
			return nil, false
		}
	}
}

// tryAcquire takes a slot if one is free; else it returns the channel
// that is closed when one is released.
func (b *Budget) tryAcquire() (release func(), ok bool, freed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max > 0 && b.active >= b.max {
		return nil, false, b.freed
	}
	b.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.active--
			close(b.freed)
			b.freed = make(chan struct{})
			b.mu.Unlock()
		})
	}, true, nil
}

// Active is the number of slots taken.
func (b *Budget) Active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active
}

// Refused is the number of Acquire calls refused so far.
func (b *Budget) Refused() int64 { return b.refused.Load() }

func (b *Budget) rate() *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limiter
}

// Pace returns c with its reads paced by the budget's byte rate: each
// read takes at most the bucket's burst and waits for as many tokens.
// Closing the returned conn ends a wait in progress.
func (b *Budget) Pace(c net.Conn) net.Conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &pacedConn{Conn: c, b: b, ctx: ctx, cancel: cancel}
}

type pacedConn struct {
	net.Conn
	b      *Budget
	ctx    context.Context
	cancel context.CancelFunc
}

func (p *pacedConn) Read(buf []byte) (int, error) {
	lim := p.b.rate()
	if lim == nil {
		return p.Conn.Read(buf)
	}
	if burst := lim.Burst(); len(buf) > burst {
		buf = buf[:burst]
	}
	n, err := p.Conn.Read(buf)
	if n > 0 {
		if werr := lim.WaitN(p.ctx, n); werr != nil && err == nil {
			err = net.ErrClosed
		}
	}
	return n, err
}

func (p *pacedConn) Close() error {
	p.cancel()
	return p.Conn.Close()
}

// CloseWrite passes a half-close on when the conn supports it.
func (p *pacedConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}
