package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

// Version is the software version sent in the hello; the command sets it.
var Version = "dev"

// Connector keeps tunnels to the gateways and serves their streams.
type Connector struct {
	cfg      Config // as started; a reload replaces state, not this
	log      *zap.Logger
	cert     tls.Certificate
	pin      auth.Pin
	metrics  *metrics
	reg      *prometheus.Registry
	series   *admin.Series
	events   *admin.Events
	admin    *admin.Server
	started  time.Time
	store    auth.Store // the device registry, or nil
	ownStore bool       // opened here, so closed here
	ca       *certs.CA  // signs agent certificates, or nil
	budget   *payload.Budget

	mu       sync.Mutex
	state    *state             // guarded by mu; read via current()
	targets  map[string]*target // running gateway loops by key
	runCtx   context.Context    // set by Run
	loops    sync.WaitGroup
	reloadMu sync.Mutex
	closed   bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// state is what a reload replaces as one piece.
type state struct {
	cfg      Config
	services map[string]*service
	bundle   []*x509.Certificate
	ca       *certs.CA // signs agent certificates (rolled over by a reload), or nil
	catalog  *catalog  // the payload catalog file as loaded, or nil
	signers  []*payload.Signer
	entries  int // signed catalog entries in snap
	snap     *tunnel.Snapshot
	changed  chan struct{} // closed when this state is replaced
}

// New checks cfg, loads the key, the CA bundle and the services, and builds
// a connector. It starts nothing.
func New(cfg Config) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Connector{cfg: cfg, log: cfg.Logger.With(zap.String("tenant", cfg.Tenant), zap.String("connector_id", cfg.ID)),
		targets: map[string]*target{}, events: admin.NewEvents(50), started: cfg.Now(), done: make(chan struct{})}
	if err := c.loadIdentity(); err != nil {
		return nil, err
	}
	var err error
	if c.store, err = openRegistry(cfg, c.log); err != nil {
		return nil, err
	}
	c.ownStore = c.store != nil && cfg.Store == nil
	c.budget = payload.NewBudget(cfg.Payloads.Relay.budget())
	st, err := c.buildState(cfg, 0)
	if err != nil {
		c.closeStore()
		return nil, err
	}
	c.state = st
	c.reg = cfg.Registry
	if c.reg == nil {
		c.reg = prometheus.NewRegistry()
		c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	c.metrics = newMetrics(c.reg, c)
	c.series = admin.NewSeries(2*time.Second, 300, c.counters)
	if err := c.newAdmin(); err != nil {
		return nil, err
	}
	return c, nil
}

// buildState loads what cfg names: bundle, services, gateway TLS. The
// snapshot's version is the load time, kept above prev so that a reload
// always pushes a newer snapshot.
func (c *Connector) buildState(cfg Config, prev uint64) (*state, error) {
	st := &state{cfg: cfg, services: map[string]*service{}, changed: make(chan struct{})}
	var err error
	if st.bundle, err = loadBundle(cfg); err != nil {
		return nil, err
	}
	if st.ca, err = loadSigningCA(cfg); err != nil {
		return nil, err
	}
	st.bundle = bundleWith(st.bundle, st.ca)
	for i, sc := range cfg.Services {
		svc, err := newService(sc, cfg)
		if err != nil {
			return nil, fmt.Errorf("services[%d] (%s): %w", i, sc.Name, err)
		}
		st.services[sc.Name] = svc
	}
	for i, g := range cfg.Gateways {
		if _, err := c.gatewayTLS(g); err != nil {
			return nil, fmt.Errorf("gateways[%d] (%s): %w", i, g.Address, err)
		}
	}
	if st.signers, err = loadSigners(cfg.Payloads); err != nil {
		return nil, err
	}
	if cfg.Payloads.Catalog != "" {
		if st.catalog, err = loadCatalog(cfg.Payloads.Catalog, cfg.Now()); err != nil {
			return nil, err
		}
	}
	st.snap = buildSnapshot(cfg, st.bundle)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Handshake)
	defer cancel()
	if err := c.stamp(ctx, st, prev); err != nil {
		return nil, err
	}
	return st, nil
}

// stamp signs st's catalog into its snapshot and gives the snapshot its
// version: the registry's next one, or without a registry the time, kept
// above prev so that every change pushes a newer snapshot.
func (c *Connector) stamp(ctx context.Context, st *state, prev uint64) error {
	cfg := st.cfg
	var err error
	if st.snap.Catalog, st.entries, err = signCatalog(cfg.Tenant, st.catalog, st.signers, cfg.Payloads, cfg.Now()); err != nil {
		return err
	}
	st.snap.Version = max(uint64(cfg.Now().UnixNano()), prev+1)
	if c.store == nil {
		return nil
	}
	st.snap.Version = prev + 1
	return c.registrySnapshot(ctx, st.snap, cfg.Now(), cfg.Enrollment.RenewGrace)
}

// current returns the state in force.
func (c *Connector) current() *state {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Connector) loadIdentity() error {
	if c.cfg.Certificate != nil {
		c.cert = *c.cfg.Certificate
	} else {
		key, created, err := certs.LoadOrCreateKey(c.cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("key_file: %w", err)
		}
		if c.cert, err = certs.SelfSigned(key, "sekisho connector "+c.cfg.ID, c.cfg.Now()); err != nil {
			return err
		}
		if created {
			c.log.Warn("created a new connector key: add its pin to the gateway's tenant config",
				zap.String("key_file", c.cfg.KeyFile))
		}
	}
	leaf, err := x509.ParseCertificate(c.cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("connector certificate: %w", err)
	}
	c.pin = auth.PinOfCert(leaf)
	return nil
}

// Pin is the SPKI pin of the connector's key, for the gateway config.
func (c *Connector) Pin() auth.Pin { return c.pin }

func loadBundle(cfg Config) ([]*x509.Certificate, error) {
	if len(cfg.TrustBundle) > 0 {
		return cfg.TrustBundle, nil
	}
	var out []*x509.Certificate
	for _, f := range cfg.AgentCA.CertFiles {
		cs, err := certs.LoadCerts(f)
		if err != nil {
			return nil, fmt.Errorf("agent_ca: %w", err)
		}
		for _, ca := range cs {
			if !ca.IsCA {
				return nil, fmt.Errorf("agent_ca: %s: %s is not a CA certificate", f, ca.Subject)
			}
		}
		out = append(out, cs...)
	}
	return out, nil
}

// buildSnapshot makes the tenant's snapshot, without version (stamp gives
// it). Without a shared registry the connector's config is the source of
// truth: epoch "config", and the version is the load time, so the most
// recently (re)loaded connector wins.
func buildSnapshot(cfg Config, bundle []*x509.Certificate) *tunnel.Snapshot {
	snap := &tunnel.Snapshot{Tenant: cfg.Tenant, Epoch: "config"}
	for _, ca := range bundle {
		snap.TrustBundle = append(snap.TrustBundle, ca.Raw)
	}
	for _, s := range cfg.Services {
		snap.Services = append(snap.Services, tunnel.Service{
			Name: s.Name, Host: s.Host, PathPrefix: s.PathPrefix, HostRewrite: s.HostRewrite, Connect: s.Connect,
		})
	}
	return snap
}

// Run keeps the sessions up until ctx ends or Close is called.
func (c *Connector) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed || c.cancel != nil {
		c.mu.Unlock()
		return errors.New("connector: already running or closed")
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.runCtx = ctx
	st := c.state
	c.mu.Unlock()
	defer close(c.done)
	c.log.Info("connector starting", zap.Stringer("pin", c.pin), zap.Int("gateways", len(st.cfg.Gateways)),
		zap.Int("sessions_per_gateway", st.cfg.SessionsPerGateway), zap.Int("services", len(st.services)))
	if c.admin != nil {
		c.loops.Go(func() {
			if err := c.admin.Run(ctx); err != nil {
				c.log.Error("admin listener", zap.Error(err))
			}
		})
	}
	c.loops.Go(func() { c.series.Run(ctx) })
	if w, err := certs.NewExpiryWatcher("agent CA", func() []*x509.Certificate { return c.current().bundle },
		certs.ExpiryOptions{Now: c.cfg.Now, Logger: c.log}); err == nil {
		c.loops.Go(func() { w.Run(ctx) })
	}
	if c.store != nil {
		c.loops.Go(func() { c.watchRegistry(ctx) })
	}
	c.loops.Go(func() { c.watchCatalog(ctx) })
	c.reconcile(st.cfg)
	<-ctx.Done()
	c.mu.Lock()
	for _, t := range c.targets {
		t.stop()
	}
	c.mu.Unlock()
	c.loops.Wait()
	c.closeStore()
	return nil
}

// closeStore closes the registry when the connector opened it.
func (c *Connector) closeStore() {
	if c.ownStore {
		c.store.Close()
	}
}

// Close stops the connector and waits for its goroutines.
func (c *Connector) Close() error {
	c.mu.Lock()
	c.closed = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-c.done
		return nil
	}
	c.closeStore() // never ran
	return nil
}

// Sessions is the number of gateway sessions up now whose snapshot the
// gateway accepted.
func (c *Connector) Sessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.targets {
		n += int(t.up.Load())
	}
	return n
}

// AdminAddr returns the admin listener's address, or nil without one.
func (c *Connector) AdminAddr() any {
	if c.admin == nil {
		return nil
	}
	return c.admin.Addr()
}

// Registry is the connector's metrics registry.
func (c *Connector) Registry() *prometheus.Registry { return c.reg }
