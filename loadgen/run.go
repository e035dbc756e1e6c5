package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Run connects the agents, holds them for the duration (idle or issuing
// requests), then disconnects them and returns what it saw. It stops early
// when ctx ends, with the figures so far.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f, err := newFleet(cfg)
	if err != nil {
		return nil, err
	}
	defer f.close()
	st := newStats()
	progressCtx, stopProgress := context.WithCancel(ctx)
	var bg sync.WaitGroup
	if cfg.Progress != nil {
		bg.Go(func() { st.progress(progressCtx, cfg.Progress, cfg.Agents) })
	}
	// An agent lives (keepalives, reconnection) from the moment it is
	// connected until the hold ends, so that a long ramp does not leave
	// the first agents silent past the gateway's idle timeout.
	liveCtx, stopLiving := context.WithCancel(ctx)
	defer stopLiving()
	var living sync.WaitGroup
	onConnected := func(*agent) {}
	if cfg.Reconnect || cfg.KeepAlive > 0 && cfg.RequestRate == 0 {
		onConnected = func(a *agent) { living.Go(func() { a.live(liveCtx, cfg, st) }) }
	}
	agents := connectAll(ctx, cfg, f, st, onConnected)
	st.connectDone = time.Now()
	defer func() {
		for _, a := range agents {
			a.close()
		}
	}()
	holdCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	if len(agents) > 0 {
		hold(holdCtx, cfg, agents, st)
	}
	st.holdDone = time.Now()
	stopLiving()
	living.Wait()
	stopProgress()
	bg.Wait()
	return st.summary(cfg), nil
}

// connectAll connects the agents at ConnectRate with at most Concurrency
// connects in flight; each connect is a TLS handshake plus one small
// request, so "connected" means the gateway served it. With Reconnect, an
// agent retries its connect until it is served or the run ends.
func connectAll(ctx context.Context, cfg Config, f *fleet, st *stats, onConnected func(*agent)) []*agent {
	lim := rate.NewLimiter(rate.Inf, 1)
	if cfg.ConnectRate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.ConnectRate), 1)
	}
	sem := make(chan struct{}, cfg.Concurrency)
	var mu sync.Mutex
	var out []*agent
	var wg sync.WaitGroup
	st.connectStart = time.Now()
	for i := range cfg.Agents {
		if lim.Wait(ctx) != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a, err := f.newAgent(i)
			if err != nil {
				st.connectFailed(err)
				return
			}
			start := time.Now()
			if err := a.connect(ctx, cfg, st); err != nil {
				a.close()
				st.connectFailed(err)
				return
			}
			st.connected(time.Since(start))
			onConnected(a)
			mu.Lock()
			out = append(out, a)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// hold issues RequestRate requests per second over the agents until ctx
// ends, or just waits when the agents are idle.
func hold(ctx context.Context, cfg Config, agents []*agent, st *stats) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if cfg.RequestRate <= 0 {
		<-ctx.Done()
		return
	}
	lim := rate.NewLimiter(rate.Limit(cfg.RequestRate), max(1, int(cfg.RequestRate/100)))
	inflight := make(chan struct{}, 8*len(agents)+64)
	for ctx.Err() == nil {
		if lim.Wait(ctx) != nil {
			return
		}
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			return
		}
		a := agents[rand.IntN(len(agents))]
		path, payload := cfg.SmallPath, rand.Float64() < cfg.PayloadFraction
		if payload {
			path = cfg.PayloadPath
		}
		wg.Go(func() {
			defer func() { <-inflight }()
			start := time.Now()
			n, err := a.do(ctx, path)
			if err != nil && ctx.Err() != nil {
				return // the run ended under it
			}
			st.request(payload, n, time.Since(start), err)
		})
	}
}

// do makes one GET and reads the body, returning the bytes read.
func (a *agent) do(ctx context.Context, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, err
	}
	if resp.StatusCode != http.StatusOK {
		return n, &statusError{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	}
	return n, nil
}

// statusError is an answer that was not 200.
type statusError struct {
	code       int
	retryAfter string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }
