package netwatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSource is a source the test feeds.
type fakeSource struct {
	notes chan Kind
	fail  chan error
	done  chan struct{}
}

func newFake() *fakeSource {
	return &fakeSource{notes: make(chan Kind), fail: make(chan error, 1), done: make(chan struct{})}
}

func (f *fakeSource) run(ctx context.Context, note func(Kind)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.done:
			return nil
		case err := <-f.fail:
			return err
		case k := <-f.notes:
			note(k)
		}
	}
}

func (f *fakeSource) close() error {
	close(f.done)
	return nil
}

// watch runs a watcher over src in a bubble; reports arrive on the
// returned channel, Run's result on the other.
func watch(t *testing.T, cfg Config, src source) (chan Change, chan error, context.CancelFunc) {
	w := &Watcher{cfg: cfg.withDefaults(), src: src, wake: make(chan struct{}, 1)}
	reports, done := make(chan Change, 16), make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- w.Run(ctx, func(c Change) { reports <- c }) }()
	return reports, done, cancel
}

// A burst of notifications closer together than Debounce is one report,
// made once the network has been quiet for Debounce.
func TestDebounceBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake()
		reports, done, cancel := watch(t, Config{Debounce: 100 * time.Millisecond}, src)
		start := time.Now()
		for _, k := range []Kind{Addr, Route, Route, Addr, Route} {
			src.notes <- k
			time.Sleep(30 * time.Millisecond)
		}
		synctest.Wait()
		select {
		case c := <-reports:
			t.Fatalf("reported %+v before the network was quiet", c)
		default:
		}
		c := <-reports
		if c.Count != 5 || c.Kinds != Addr|Route || c.First != start || c.Last != start.Add(120*time.Millisecond) {
			t.Fatalf("report %+v, want 5 notifications addr|route from %v to +120ms", c, start)
		}
		if at := time.Since(start); at != 220*time.Millisecond {
			t.Fatalf("reported %v after the first notification, want 220ms (last + debounce)", at)
		}
		src.notes <- Addr
		if c := <-reports; c.Count != 1 || c.Kinds != Addr {
			t.Fatalf("second report %+v, want one addr", c)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

// A stream of notifications that never pauses is still reported, MaxDelay
// after its first.
func TestDebounceMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake()
		reports, done, cancel := watch(t, Config{Debounce: 100 * time.Millisecond, MaxDelay: time.Second}, src)
		start := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case src.notes <- Route:
				case <-stop:
					return
				}
				time.Sleep(60 * time.Millisecond)
			}
		})
		c := <-reports
		at := time.Since(start)
		close(stop)
		wg.Wait()
		if at != time.Second {
			t.Fatalf("first report after %v, want 1s: %+v", at, c)
		}
		if c.Count != 17 || c.Kinds != Route { // at 0, 60, ... 960ms
			t.Fatalf("report %+v, want 17 route notifications", c)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

// A source that fails ends Run with its error.
func TestRunSourceError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake()
		_, done, cancel := watch(t, Config{}, src)
		defer cancel()
		boom := errors.New("boom")
		src.fail <- boom
		if err := <-done; !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want %v", err, boom)
		}
	})
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{0: "none", Addr: "addr", Addr | Route: "addr|route", Overflow | Poll: "overflow|poll", Interface: "interface"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", k, got, want)
		}
	}
}
