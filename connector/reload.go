package connector

import (
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/internal/admin"
)

// ReloadResult says what a reload changed.
type ReloadResult struct {
	SnapshotVersion uint64   `json:"snapshot_version"`
	ServicesAdded   []string `json:"services_added,omitempty"`
	ServicesRemoved []string `json:"services_removed,omitempty"`
	// NeedRestart lists changed settings that only a restart applies.
	NeedRestart []string `json:"need_restart,omitempty"`
}

// Reload applies a new config without dropping sessions: services, the
// agent CA bundle, gateways (added ones are dialed, removed ones closed),
// sessions per gateway, timeouts and backoff. The new snapshot is pushed on
// every session. An invalid config, or files it names that do not load,
// change nothing.
func (c *Connector) Reload(cfg Config) (*ReloadResult, error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	fail := func(err error) (*ReloadResult, error) {
		c.metrics.reloads.WithLabelValues("refused").Inc()
		c.log.Error("reload refused, configuration unchanged", zap.Error(err))
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	old := c.current()
	need := restartOnly(old.cfg, cfg.withDefaults())
	cfg = c.inherit(cfg).withDefaults()
	st, err := c.buildState(cfg, old.snap.Version)
	if err != nil {
		return fail(err)
	}
	keepServices(old, st)
	res := &ReloadResult{SnapshotVersion: st.snap.Version, NeedRestart: need}
	res.ServicesAdded, res.ServicesRemoved = serviceDiff(old, st)
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
	close(old.changed) // every session pushes the new snapshot
	c.budget.Set(cfg.Payloads.Relay.budget())
	c.reconcile(cfg)
	c.metrics.reloads.WithLabelValues("ok").Inc()
	c.events.Add(admin.Event{Time: time.Now(), Kind: "reload", Reason: "snapshot pushed"})
	c.log.Info("configuration reloaded", zap.Uint64("snapshot_version", st.snap.Version),
		zap.Strings("services_added", res.ServicesAdded), zap.Strings("services_removed", res.ServicesRemoved),
		zap.Strings("need_restart", res.NeedRestart))
	return res, nil
}

// inherit copies the settings that do not come from a config file, and
// keeps those only a restart may change.
func (c *Connector) inherit(cfg Config) Config {
	cfg.ID, cfg.Tenant, cfg.KeyFile, cfg.Tunnel, cfg.Admin = c.cfg.ID, c.cfg.Tenant, c.cfg.KeyFile, c.cfg.Tunnel, c.cfg.Admin
	cfg.Certificate, cfg.Dialer, cfg.Logger, cfg.Now = c.cfg.Certificate, c.cfg.Dialer, c.cfg.Logger, c.cfg.Now
	cfg.Rand, cfg.Registry, cfg.ReloadSource = c.cfg.Rand, c.cfg.Registry, c.cfg.ReloadSource
	if cfg.TrustBundle == nil && len(cfg.AgentCA.CertFiles) == 0 {
		cfg.TrustBundle = c.cfg.TrustBundle
	}
	if cfg.Payloads.Keys == nil && len(cfg.Payloads.SigningKeys) == 0 {
		cfg.Payloads.Keys = c.cfg.Payloads.Keys
	}
	return cfg
}

// keepServices carries over service objects whose config did not change,
// so that their counters and active streams stay with them.
func keepServices(old, st *state) {
	for _, sc := range st.cfg.Services {
		i := slices.IndexFunc(old.cfg.Services, func(o ServiceConfig) bool { return o.Name == sc.Name })
		if i >= 0 && reflect.DeepEqual(old.cfg.Services[i], sc) {
			st.services[sc.Name] = old.services[sc.Name]
		}
	}
}

func serviceDiff(old, st *state) (added, removed []string) {
	for name := range st.services {
		if old.services[name] == nil {
			added = append(added, name)
		}
	}
	for name := range old.services {
		if st.services[name] == nil {
			removed = append(removed, name)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// restartOnly names the settings that changed but apply only at start.
func restartOnly(a, b Config) []string {
	var out []string
	for name, same := range map[string]bool{
		"id": a.ID == b.ID, "tenant": a.Tenant == b.Tenant, "key_file": a.KeyFile == b.KeyFile,
		"tunnel": reflect.DeepEqual(a.Tunnel.WithDefaults(), b.Tunnel.WithDefaults()), "admin": a.Admin == b.Admin,
	} {
		if !same {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
