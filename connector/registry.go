package connector

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/tunnel"
)

// openRegistry opens the device registry the config names, if any.
func openRegistry(cfg Config, log *zap.Logger) (auth.Store, error) {
	if cfg.Store != nil {
		return cfg.Store, nil
	}
	if cfg.DeviceRegistry == "" {
		return nil, nil
	}
	st, err := auth.OpenStore(context.Background(), cfg.DeviceRegistry, log.Named("registry"))
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return st, nil
}

// loadSigningCA loads the CA that signs agent certificates.
func loadSigningCA(cfg Config) (*certs.CA, error) {
	if cfg.SigningCA != nil {
		return cfg.SigningCA, nil
	}
	if cfg.CA.CertFile == "" {
		return nil, nil
	}
	ca, err := certs.LoadCA(cfg.Tenant, cfg.CA.CertFile, cfg.CA.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return ca, nil
}

// registrySnapshot fills the parts of a snapshot the registry owns: its
// epoch, the next version of the tenant's shared sequence, and the
// revocations still to push.
func (c *Connector) registrySnapshot(ctx context.Context, snap *tunnel.Snapshot, now time.Time, grace time.Duration) error {
	epoch, err := c.store.Epoch(ctx)
	if err != nil {
		return fmt.Errorf("registry epoch: %w", err)
	}
	version, err := c.store.NextVersion(ctx, c.cfg.Tenant)
	if err != nil {
		return fmt.Errorf("registry version: %w", err)
	}
	revoked, err := c.store.Revocations(ctx, c.cfg.Tenant, now, grace)
	if err != nil {
		return fmt.Errorf("registry revocations: %w", err)
	}
	snap.Epoch, snap.Version = epoch, max(version, snap.Version)
	snap.Revocations = snap.Revocations[:0]
	for _, r := range revoked {
		snap.Revocations = append(snap.Revocations, tunnel.Revocation{Serial: r.Serial, DeviceID: r.DeviceID, NotAfter: r.NotAfter})
	}
	return nil
}

// refresh rebuilds the snapshot from the registry (a revocation, a new
// device, revocations aging out) and pushes it on every session.
func (c *Connector) refresh(ctx context.Context, why string) error {
	return c.republish(ctx, why, nil)
}

// republish rebuilds the snapshot of the state in force, changed by
// mutate when set, re-signing the catalog and taking a new version, and
// pushes it on every session.
func (c *Connector) republish(ctx context.Context, why string, mutate func(*state)) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	old := c.current()
	next := *old
	snap := *old.snap
	snap.Revocations = slices.Clone(old.snap.Revocations)
	next.snap, next.changed = &snap, make(chan struct{})
	if mutate != nil {
		mutate(&next)
	}
	if err := c.stamp(ctx, &next, old.snap.Version); err != nil {
		return err
	}
	c.mu.Lock()
	c.state = &next
	c.mu.Unlock()
	close(old.changed)
	c.log.Info("snapshot republished", zap.String("why", why), zap.Uint64("version", snap.Version),
		zap.Int("revocations", len(snap.Revocations)), zap.Int("catalog_entries", next.entries))
	return nil
}

// watchRegistry refreshes the snapshot on every registry change (from
// this connector or, with PostgreSQL, another one of the tenant) and every
// hour, so revocations past expiry plus grace leave the pushed list.
func (c *Connector) watchRegistry(ctx context.Context) {
	changes, err := c.store.Watch(ctx)
	if err != nil {
		c.log.Error("registry changes not watched", zap.Error(err))
		return
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		why := "hourly"
		select {
		case <-ctx.Done():
			return
		case ch, ok := <-changes:
			if !ok {
				return
			}
			if ch.Tenant != "" && ch.Tenant != c.cfg.Tenant {
				continue
			}
			why = string(ch.Kind)
		case <-tick.C:
		}
		if err := c.refresh(ctx, why); err != nil && ctx.Err() == nil {
			c.log.Error("snapshot not refreshed", zap.Error(err))
		}
	}
}

// deviceGroups returns a device's groups from the registry.
func (c *Connector) deviceGroups(ctx context.Context, device string) ([]string, error) {
	if c.store == nil {
		return nil, errors.New("device groups are unknown (no registry)")
	}
	d, err := c.store.GetDevice(ctx, c.cfg.Tenant, device)
	if err != nil {
		return nil, err
	}
	if d.Status != auth.DeviceActive {
		return nil, fmt.Errorf("device is %s", d.Status)
	}
	return d.Groups, nil
}

// bundleWith adds the signing CA to the trust bundle when it is not there.
func bundleWith(bundle []*x509.Certificate, ca *certs.CA) []*x509.Certificate {
	if ca == nil {
		return bundle
	}
	for _, c := range bundle {
		if c.Equal(ca.Cert) {
			return bundle
		}
	}
	return append(slices.Clone(bundle), ca.Cert)
}
