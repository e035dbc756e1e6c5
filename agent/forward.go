package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/internal/splice"
)

// relays owns the connections the agent relays to the gateways: it bounds
// how many are open at once and closes them all on shutdown.
type relays struct {
	client *Client
	idle   time.Duration
	log    *zap.Logger
	slots  chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	refusedLog atomic.Int64 // unix nanos of the last "limit reached" log
}

func newRelays(client *Client, cfg Config, log *zap.Logger) *relays {
	return &relays{
		client: client, idle: cfg.IdleTimeout, log: log,
		slots: make(chan struct{}, cfg.MaxConns),
		conns: map[net.Conn]struct{}{},
	}
}

// acquire takes a slot, or reports false when MaxConns are open.
func (r *relays) acquire() bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
		if now := time.Now().UnixNano(); now-r.refusedLog.Load() > int64(time.Second) {
			r.refusedLog.Store(now)
			r.log.Warn("relayed connection limit reached", zap.Int("max_conns", cap(r.slots)))
		}
		return false
	}
}

func (r *relays) release() { <-r.slots }

// track registers local so that shutdown closes it; false once shut down.
// Each successful track needs an untrack.
func (r *relays) track(local net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[local] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *relays) untrack(local net.Conn) {
	r.mu.Lock()
	delete(r.conns, local)
	r.mu.Unlock()
	r.wg.Done()
}

// active returns how many relayed connections are open.
func (r *relays) active() int { return len(r.slots) }

// splice copies between a local connection and a tunnel until both are
// done, the idle timeout passes or shutdown closes them.
func (r *relays) splice(local, remote net.Conn, service string) {
	up, down, err := splice.Run(local, remote, splice.Config{Idle: r.idle, HalfClose: true})
	r.log.Debug("relay closed", zap.String("service", service), zap.String("local_addr", local.RemoteAddr().String()),
		zap.Int64("bytes_up", up), zap.Int64("bytes_down", down), zap.Error(err))
}

// shutdown closes every relayed connection and waits for their relays.
func (r *relays) shutdown() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// forwarder relays each connection accepted on a local port to a service.
type forwarder struct {
	Forward
	ln     net.Listener
	relays *relays
	log    *zap.Logger
}

// listenLocal listens on addr and refuses a non-loopback address unless
// allowRemote ("localhost" might resolve to anything).
func listenLocal(addr string, allowRemote bool) (net.Listener, error) {
	if err := checkListen(addr, allowRemote); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !allowRemote && !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%q bound %s: %w", addr, ta, errNotLoopback)
	}
	return ln, nil
}

// serve accepts until ctx ends or the listener fails.
func (f *forwarder) serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { f.ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, then go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			f.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		f.start(ctx, c)
	}
}

// start relays c in a goroutine owned by relays, or closes it at once when
// the limit is reached or the agent is shutting down.
func (f *forwarder) start(ctx context.Context, c net.Conn) {
	if !f.relays.acquire() {
		c.Close()
		return
	}
	if !f.relays.track(c) {
		f.relays.release()
		c.Close()
		return
	}
	go func() {
		defer f.relays.release()
		defer f.relays.untrack(c)
		f.relay(ctx, c)
	}()
}

func (f *forwarder) relay(ctx context.Context, local net.Conn) {
	remote, err := f.relays.client.DialConnect(ctx, f.Service)
	if err != nil {
		f.log.Warn("forward failed", zap.String("local_addr", local.RemoteAddr().String()), zap.Error(err))
		local.Close()
		return
	}
	f.relays.splice(local, remote, f.Service)
}
