package auth

import (
	"context"
	"slices"
	"sync"
)

// hub fans changes out to watchers. Publishing never blocks: each watcher
// keeps a set of pending changes that its own goroutine hands over, so a
// slow receiver sees changes merged, never lost.
type hub struct {
	mu     sync.Mutex
	subs   map[*watcher]struct{}
	closed bool
	done   chan struct{} // closed by close
	wg     sync.WaitGroup
}

type watcher struct {
	mu      sync.Mutex
	pending []Change // distinct, oldest first
	wake    chan struct{}
}

func newHub() *hub {
	return &hub{subs: make(map[*watcher]struct{}), done: make(chan struct{})}
}

// watch registers a watcher whose channel closes when ctx ends or the hub
// closes.
func (h *hub) watch(ctx context.Context) (<-chan Change, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrStoreClosed
	}
	w := &watcher{wake: make(chan struct{}, 1)}
	h.subs[w] = struct{}{}
	out := make(chan Change)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(out)
		w.run(ctx, h.done, out)
		h.mu.Lock()
		delete(h.subs, w)
		h.mu.Unlock()
	}()
	return out, nil
}

func (w *watcher) run(ctx context.Context, done <-chan struct{}, out chan<- Change) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-w.wake:
		}
		for {
			c, ok := w.next()
			if !ok {
				break
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}
}

func (w *watcher) next() (Change, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		return Change{}, false
	}
	c := w.pending[0]
	w.pending = w.pending[1:]
	return c, true
}

func (w *watcher) add(c Change) {
	w.mu.Lock()
	if !slices.Contains(w.pending, c) {
		w.pending = append(w.pending, c)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// publish tells every watcher about c.
func (h *hub) publish(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		w.add(c)
	}
}

// close ends every watcher and waits for their goroutines.
func (h *hub) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
	h.wg.Wait()
}
