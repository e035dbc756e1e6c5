package loadgen

import (
	"context"
	"math/rand/v2"
	"time"
)

// live keeps one agent until ctx ends: a keepalive request every
// cfg.KeepAlive while the agents are idle, and, with cfg.Reconnect, a way
// back each time its connection is lost.
func (a *agent) live(ctx context.Context, cfg Config, st *stats) {
	var tick <-chan time.Time
	var t *time.Timer
	if cfg.KeepAlive > 0 && cfg.RequestRate == 0 {
		// Spread the herd: the first keepalive at a random point of the period.
		t = time.NewTimer(time.Duration(rand.Int64N(int64(cfg.KeepAlive))))
		defer t.Stop()
		tick = t.C
	}
	var lost <-chan struct{}
	if cfg.Reconnect {
		lost = a.lost
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			start := time.Now()
			n, err := a.do(ctx, cfg.SmallPath)
			if err != nil && ctx.Err() != nil {
				return // the run ended under it
			}
			st.request(false, n, time.Since(start), err)
			t.Reset(cfg.KeepAlive)
		case <-lost:
			a.reconnect(ctx, cfg, st)
		}
	}
}

// connect makes the agent's first request. With cfg.Reconnect a failed
// attempt is retried after the reconnect backoff, as a real agent would,
// until one is served or ctx ends; each failed attempt is counted.
func (a *agent) connect(ctx context.Context, cfg Config, st *stats) error {
	for attempt := 0; ; attempt++ {
		_, err := a.do(ctx, cfg.SmallPath)
		if err == nil {
			a.drainLost() // connections dropped by failed attempts are not losses
			return nil
		}
		if !cfg.Reconnect || ctx.Err() != nil {
			return err
		}
		st.connectRetried(err)
		a.dropIfTimedOut(err)
		t := time.NewTimer(cfg.ReconnectBackoff.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// reconnect brings the agent back after its connection was lost: small
// requests, each of which dials a new connection if there is none,
// separated by jittered exponential backoff, until one is served (200) or
// ctx ends. An agent never gives up while the run lasts.
func (a *agent) reconnect(ctx context.Context, cfg Config, st *stats) {
	lostAt := st.lost()
	for attempt := 0; ; attempt++ {
		t := time.NewTimer(cfg.ReconnectBackoff.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		a.drainLost() // a loss noted before this attempt is of a connection it replaces
		_, err := a.do(ctx, cfg.SmallPath)
		if err == nil {
			st.back(lostAt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		st.reconnectFailed(err)
		a.dropIfTimedOut(err)
	}
}

// dropIfTimedOut drops the agent's connection after a request that timed
// out on it: the gateway may have forgotten the connection (a QUIC
// connection it gave up on under load, without a stateless reset), and a
// real agent would dial again rather than wait for the idle timeout.
func (a *agent) dropIfTimedOut(err error) {
	if kindOf(err) == "timeout" {
		a.drop()
	}
}
