package netwatch

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultDebounce = 50 * time.Millisecond
	DefaultMaxDelay = time.Second
	DefaultPoll     = 5 * time.Second
)

// Config configures a Watcher. The zero value of every field means the
// default written in its comment.
type Config struct {
	// Debounce is how long the network must stay quiet after a
	// notification before the burst is reported. Default 50ms.
	Debounce time.Duration
	// MaxDelay bounds how long a stream of notifications can hold a report
	// back. Default 1s.
	MaxDelay time.Duration
	// Poll is the interval between looks at the interface addresses where
	// the system sends no notifications. Default 5s.
	Poll time.Duration
	// Logger receives the watcher's logs. Default: none.
	Logger *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.MaxDelay < c.Debounce {
		c.MaxDelay = max(DefaultMaxDelay, c.Debounce)
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Kind says what a notification was about.
type Kind uint8

// Kinds of notification; a Change carries the union of its burst's.
const (
	Addr      Kind = 1 << iota // an address added or removed
	Route                      // a route added or removed
	Interface                  // an interface's state changed (Windows)
	Overflow                   // notifications were lost: anything may have changed
	Poll                       // the polled addresses differ from the last look
)

// String lists the kinds, such as "addr|route".
func (k Kind) String() string {
	var names []string
	for i, n := range []string{"addr", "route", "interface", "overflow", "poll"} {
		if k&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Change is one burst of notifications.
type Change struct {
	// First and Last are when the burst's first and last notifications
	// arrived.
	First, Last time.Time
	// Count is the number of notifications in the burst.
	Count int
	// Kinds is the union of their kinds.
	Kinds Kind
}

// source delivers the system's notifications.
type source interface {
	// run calls note for each notification until ctx ends (nil) or the
	// source fails.
	run(ctx context.Context, note func(Kind)) error
	// close releases the source; it unblocks run.
	close() error
}

// Watcher reports changes of the machine's network.
type Watcher struct {
	cfg Config
	src source

	mu      sync.Mutex
	pending Change
	wake    chan struct{} // one buffered token: pending has news
	closed  bool
}

// New opens the system's change notifications (on Linux, a netlink socket
// of the calling thread's network namespace); it starts nothing.
func New(cfg Config) (*Watcher, error) {
	cfg = cfg.withDefaults()
	src, err := newSource(cfg)
	if err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, src: src, wake: make(chan struct{}, 1)}, nil
}

// Run watches until ctx ends, calling report after each burst of
// notifications, on Run's goroutine: a burst that arrives while report
// runs is reported when it returns. Run returns nil
// when ctx ends, or the error that stopped the notifications, and closes
// the watcher either way.
func (w *Watcher) Run(ctx context.Context, report func(Change)) error {
	watch, stop := context.WithCancel(ctx)
	defer stop()
	srcErr := make(chan error, 1)
	go func() {
		srcErr <- w.src.run(watch, w.note)
		stop()
	}()
	w.loop(watch, report)
	stop()
	w.Close()
	if err := <-srcErr; err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// loop reports bursts until ctx ends.
func (w *Watcher) loop(ctx context.Context, report func(Change)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		if !w.settle(ctx) {
			return
		}
		if c := w.take(); c.Count > 0 {
			report(c)
		}
	}
}

// settle waits until no notification arrived for Debounce, or MaxDelay
// after the burst's first; false when ctx ended.
func (w *Watcher) settle(ctx context.Context) bool {
	w.mu.Lock()
	deadline := w.pending.First.Add(w.cfg.MaxDelay)
	w.mu.Unlock()
	t := time.NewTimer(w.cfg.Debounce)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-w.wake:
			t.Reset(min(w.cfg.Debounce, max(time.Until(deadline), 0)))
		}
	}
}

// note records one notification.
func (w *Watcher) note(k Kind) {
	now := time.Now()
	w.mu.Lock()
	if w.pending.Count == 0 {
		w.pending.First = now
	}
	w.pending.Last = now
	w.pending.Count++
	w.pending.Kinds |= k
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the pending burst and starts a new one.
func (w *Watcher) take() Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.pending
	w.pending = Change{}
	// A token left by a notification that take now reports would start
	// an empty burst.
	select {
	case <-w.wake:
	default:
	}
	return c
}

// Close releases the notifications of a watcher that Run will not be
// called on; Run closes it itself. Idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.src.close()
}
