package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/tunnel"
)

// Version is the software version sent in the hello; the command sets it.
var Version = "dev"

// Connector keeps tunnels to the gateways and serves their streams.
type Connector struct {
	cfg      Config
	log      *zap.Logger
	cert     tls.Certificate
	pin      auth.Pin
	services map[string]*service
	snapshot *tunnel.Snapshot
	gateways []gatewayTarget

	up     atomic.Int64 // sessions currently up
	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc
	done   chan struct{}
}

type gatewayTarget struct {
	addr string
	tls  *tls.Config
}

// New checks cfg, loads the key, the CA bundle and the services, and builds
// a connector. It starts nothing.
func New(cfg Config) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Connector{cfg: cfg, log: cfg.Logger.With(zap.String("tenant", cfg.Tenant), zap.String("connector_id", cfg.ID)),
		services: map[string]*service{}, done: make(chan struct{})}
	if err := c.loadIdentity(); err != nil {
		return nil, err
	}
	bundle, err := c.loadBundle()
	if err != nil {
		return nil, err
	}
	for i, sc := range cfg.Services {
		svc, err := newService(sc, cfg)
		if err != nil {
			return nil, fmt.Errorf("services[%d] (%s): %w", i, sc.Name, err)
		}
		c.services[sc.Name] = svc
	}
	c.snapshot = c.buildSnapshot(bundle)
	for i, g := range cfg.Gateways {
		t, err := c.gatewayTLS(g)
		if err != nil {
			return nil, fmt.Errorf("gateways[%d] (%s): %w", i, g.Address, err)
		}
		c.gateways = append(c.gateways, gatewayTarget{addr: g.Address, tls: t})
	}
	return c, nil
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

func (c *Connector) loadBundle() ([]*x509.Certificate, error) {
	if len(c.cfg.TrustBundle) > 0 {
		return c.cfg.TrustBundle, nil
	}
	var out []*x509.Certificate
	for _, f := range c.cfg.AgentCA.CertFiles {
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

// buildSnapshot makes the tenant's snapshot. Without a shared registry the
// connector's config is the source of truth: epoch "config", and the
// version is the load time, so the most recently started connector wins.
func (c *Connector) buildSnapshot(bundle []*x509.Certificate) *tunnel.Snapshot {
	snap := &tunnel.Snapshot{Tenant: c.cfg.Tenant, Epoch: "config", Version: uint64(c.cfg.Now().UnixNano())}
	for _, ca := range bundle {
		snap.TrustBundle = append(snap.TrustBundle, ca.Raw)
	}
	for _, s := range c.cfg.Services {
		snap.Services = append(snap.Services, tunnel.Service{
			Name: s.Name, Host: s.Host, PathPrefix: s.PathPrefix, HostRewrite: s.HostRewrite,
		})
	}
	return snap
}

func (c *Connector) gatewayTLS(g GatewayConfig) (*tls.Config, error) {
	conf := certs.ClientConfig(nil)
	conf.Certificates = []tls.Certificate{c.cert}
	conf.ServerName = g.ServerName
	if conf.ServerName == "" {
		host, _, _ := net.SplitHostPort(g.Address)
		conf.ServerName = host
	}
	conf.RootCAs = g.RootCAs
	if conf.RootCAs == nil && g.CAFile != "" {
		cas, err := certs.LoadCerts(g.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		for _, ca := range cas {
			conf.RootCAs.AddCert(ca)
		}
	}
	return conf, nil
}

// Run keeps the sessions up until ctx ends or Close is called.
func (c *Connector) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed || c.cancel != nil {
		c.mu.Unlock()
		return errors.New("connector: already running or closed")
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.mu.Unlock()
	defer close(c.done)
	c.log.Info("connector starting", zap.Stringer("pin", c.pin), zap.Int("gateways", len(c.gateways)),
		zap.Int("sessions_per_gateway", c.cfg.SessionsPerGateway), zap.Int("services", len(c.services)))
	var wg sync.WaitGroup
	for _, g := range c.gateways {
		for i := range c.cfg.SessionsPerGateway {
			wg.Go(func() { c.keepSession(ctx, g, i) })
		}
	}
	wg.Wait()
	return nil
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
	}
	return nil
}

// Sessions is the number of gateway sessions up now whose snapshot the
// gateway accepted.
func (c *Connector) Sessions() int { return int(c.up.Load()) }

// keepSession dials one session slot to a gateway and redials it when it
// ends, with jittered exponential backoff.
func (c *Connector) keepSession(ctx context.Context, g gatewayTarget, slot int) {
	log := c.log.With(zap.String("gateway", g.addr), zap.Int("slot", slot))
	b := tunnel.Backoff{Min: c.cfg.Backoff.Min, Max: c.cfg.Backoff.Max, Rand: c.cfg.Rand}
	attempt := 0
	for ctx.Err() == nil {
		established, err := c.runSession(ctx, g, log)
		if ctx.Err() != nil {
			return
		}
		if established {
			attempt = 0 // it worked before: come back quickly
		}
		delay := b.Delay(attempt)
		attempt++
		log.Warn("gateway session ended, redialing", zap.Error(err), zap.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
