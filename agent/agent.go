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
)

// Agent is the running agent: its identity, the gateway client, the local
// forwarders and proxy, and the renewal loop.
type Agent struct {
	cfg    Config
	log    *zap.Logger
	clock  clock
	store  store
	client *Client
	relays *relays

	id      atomic.Pointer[Identity]
	renewMu sync.Mutex // one renewal at a time
	hint    atomic.Pointer[time.Time]
	next    atomic.Pointer[time.Time]
	lastErr atomic.Pointer[string]
	// payloads is the proxy's payload follower, once the proxy is bound.
	payloads atomic.Pointer[PayloadFollower]

	mu        sync.Mutex
	started   bool
	closed    bool
	cancel    context.CancelFunc
	done      chan struct{} // closed when Run returns
	ready     chan struct{} // closed when the listeners are bound
	listeners []string      // bound addresses, for Status
	closeOnce sync.Once
}

// New loads the identity in cfg.StateDir and prepares the agent; it starts
// nothing. An agent whose certificate has expired is accepted: Run renews
// it within the connector's grace period.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id, err := LoadIdentity(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	client, err := NewClient(cfg, id.TLSCertificate())
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With(zap.String("tenant", id.Principal.Tenant), zap.String("device_id", id.Principal.DeviceID))
	a := &Agent{
		cfg: cfg, log: log, clock: newClock(cfg), store: store{dir: cfg.StateDir}, client: client,
		relays: newRelays(client, cfg, log),
		done:   make(chan struct{}), ready: make(chan struct{}),
	}
	a.id.Store(id)
	return a, nil
}

// Client returns the agent's gateway client.
func (a *Agent) Client() *Client { return a.client }

// PayloadStats returns what the proxy's payload follower did (zero without
// a proxy).
func (a *Agent) PayloadStats() PayloadStats {
	if f := a.payloads.Load(); f != nil {
		return f.Stats()
	}
	return PayloadStats{}
}

// Identity returns the current identity.
func (a *Agent) Identity() *Identity { return a.id.Load() }

// Ready is closed once Run has bound its listeners.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run binds the forwarders and the proxy, then serves them and renews the
// certificate until ctx ends or Close is called, and returns once every
// goroutine it started has ended. It returns nil when stopped, or the
// error that stopped it (a listener that cannot bind, for example).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel, err := a.start(ctx)
	if err != nil {
		return err
	}
	defer close(a.done)
	defer cancel()
	fwds, prx, err := a.listen()
	if err != nil {
		return err
	}
	close(a.ready)
	a.log.Info("agent running", zap.Strings("listen", a.listenAddrs()), zap.String("gateway", a.client.Gateway()),
		zap.Time("not_after", a.Identity().Leaf().NotAfter))
	err = a.serve(ctx, fwds, prx)
	a.relays.shutdown()
	a.client.CloseIdleConnections()
	return err
}

// start marks the agent running and returns the context that Close
// cancels.
func (a *Agent) start(ctx context.Context) (context.Context, context.CancelFunc, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return nil, nil, errors.New("agent closed")
	case a.started:
		return nil, nil, errors.New("agent already running")
	}
	a.started = true
	ctx, a.cancel = context.WithCancel(ctx)
	return ctx, a.cancel, nil
}

// listen binds every forwarder and the proxy, or none.
func (a *Agent) listen() ([]*forwarder, *proxy, error) {
	var lns []net.Listener
	fail := func(err error) ([]*forwarder, *proxy, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, nil, err
	}
	var fwds []*forwarder
	for _, f := range a.cfg.Forwards {
		ln, err := listenLocal(f.Listen, f.AllowRemote)
		if err != nil {
			return fail(fmt.Errorf("forward to %s: listen: %w", f.Service, err))
		}
		lns = append(lns, ln)
		fwds = append(fwds, &forwarder{Forward: f, ln: ln, relays: a.relays,
			log: a.log.With(zap.String("service", f.Service), zap.String("listen", ln.Addr().String()))})
	}
	var prx *proxy
	if p := a.cfg.HTTPProxy; p.Listen != "" {
		ln, err := listenLocal(p.Listen, p.AllowRemote)
		if err != nil {
			return fail(fmt.Errorf("http proxy: listen: %w", err))
		}
		lns = append(lns, ln)
		id := a.Identity()
		prx = newProxy(p.ConnectServices, ln, a.relays, PayloadOptions{
			Tenant:   id.Principal.Tenant,
			Keys:     func() []CatalogKey { return a.Identity().CatalogKeys },
			HoldBack: a.cfg.HTTPProxy.PayloadHoldBack,
			Now:      a.clock.now,
		}, a.log)
		a.payloads.Store(prx.payloads)
	}
	a.mu.Lock()
	for _, ln := range lns {
		a.listeners = append(a.listeners, ln.Addr().String())
	}
	a.mu.Unlock()
	return fwds, prx, nil
}

// serve runs the forwarders, the proxy and the renewal loop until ctx
// ends or one of them fails, and waits for all of them.
func (a *Agent) serve(ctx context.Context, fwds []*forwarder, prx *proxy) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				once.Do(func() { first = err })
				cancel()
			}
		})
	}
	for _, f := range fwds {
		run(f.serve)
	}
	if prx != nil {
		run(prx.serve)
	}
	run(a.renewLoop)
	wg.Wait()
	return first
}

// Close stops Run and waits for it; it is idempotent, and safe whether or
// not Run was called.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		cancel, started := a.cancel, a.started
		a.mu.Unlock()
		if started {
			cancel()
			<-a.done
		}
		a.client.CloseIdleConnections()
	})
	return nil
}

func (a *Agent) listenAddrs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.listeners...)
}
