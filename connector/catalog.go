package connector

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

// PayloadsConfig is the tenant's payload catalog and relay budget.
type PayloadsConfig struct {
	// Catalog is a YAML (or JSON) file of catalog entries. It is watched:
	// a valid change is signed and pushed at once; an invalid one is
	// refused whole, with the file, line and field in the log, and the
	// catalog in force stays.
	Catalog string `yaml:"catalog"`
	// SigningKeys are PEM files of Ed25519 catalog signing keys ("sekisho
	// catalog keygen"). The first signs; agents receive the public half
	// of every one, so a new key is added second, becomes first once the
	// agents have renewed, and the old one is then removed.
	SigningKeys []string `yaml:"signing_keys"`
	// SignatureLifetime is how long a signed entry stays valid (less when
	// the file gives an earlier expiry); entries are re-signed at half of
	// it. It bounds how long a gateway could replay a withdrawn entry.
	// Default 24h.
	SignatureLifetime time.Duration `yaml:"signature_lifetime"`
	// WatchInterval is how often the catalog file is checked. Default 2s.
	WatchInterval time.Duration `yaml:"watch_interval"`
	// Relay is the budget of payload bytes that cross the tunnel.
	Relay RelayConfig `yaml:"relay"`

	// Keys, when set, replace SigningKeys.
	Keys []ed25519.PrivateKey `yaml:"-"`
}

// RelayConfig bounds what crosses the tunnel as payload: catalog entries
// served by "relay", requests the gateways classify as payload (by path
// prefix or response size), and opaque CONNECT streams (bandwidth only).
// The connector enforces it where the bytes leave the LAN, so several
// gateways share one budget.
type RelayConfig struct {
	// MaxConcurrent is the number of payload downloads at once; beyond
	// it a download is refused and the agent told to retry later. 0: no
	// limit.
	MaxConcurrent int `yaml:"max_concurrent"`
	// BytesPerSecond paces payload and CONNECT bytes leaving the LAN, all
	// streams together (e.g. 12.5MB for 100 Mbit/s). 0: no limit.
	BytesPerSecond int64 `yaml:"bytes_per_second" config:"bytes"`
	// Burst is the token bucket's depth. Default a tenth of a second's
	// worth, at least 64 KiB.
	Burst int64 `yaml:"burst" config:"bytes"`
	// PathPrefixes: uncatalogued requests under these paths are payload.
	PathPrefixes []string `yaml:"path_prefixes"`
	// SizeThreshold: a GET or HEAD response with a larger Content-Length
	// is payload; 0: none.
	SizeThreshold int64 `yaml:"size_threshold" config:"bytes"`
	// QueueWait is how long a download waits for a free slot before it
	// is refused: it keeps the slots busy between one download and the
	// next agent's retry. Keep it well below the gateways' stream_timeout
	// (10s by default). Default 1s; negative: refuse at once.
	QueueWait time.Duration `yaml:"queue_wait"`
	// RetryAfter is what refused downloads are told to wait (the gateway
	// adds jitter up to as much again). Default 10s.
	RetryAfter time.Duration `yaml:"retry_after"`
}

func (p PayloadsConfig) withDefaults() PayloadsConfig {
	if p.SignatureLifetime == 0 {
		p.SignatureLifetime = 24 * time.Hour
	}
	if p.WatchInterval == 0 {
		p.WatchInterval = 2 * time.Second
	}
	if p.Relay.RetryAfter == 0 {
		p.Relay.RetryAfter = 10 * time.Second
	}
	if p.Relay.QueueWait == 0 {
		p.Relay.QueueWait = time.Second
	}
	return p
}

func (p *PayloadsConfig) validate() []error {
	var errs []error
	if p.Catalog != "" && len(p.SigningKeys) == 0 && len(p.Keys) == 0 {
		errs = append(errs, config.Fieldf("payloads.signing_keys", "a catalog needs at least one signing key"))
	}
	if p.SignatureLifetime < 0 || (p.SignatureLifetime > 0 && p.SignatureLifetime < time.Minute) {
		errs = append(errs, config.Fieldf("payloads.signature_lifetime", "want at least 1m"))
	}
	if p.WatchInterval < 0 {
		errs = append(errs, config.Fieldf("payloads.watch_interval", "must not be negative"))
	}
	r := p.Relay
	if r.QueueWait > 5*time.Second {
		errs = append(errs, config.Fieldf("payloads.relay.queue_wait", "at most 5s: the gateway waits for the answer"))
	}
	if r.MaxConcurrent < 0 || r.BytesPerSecond < 0 || r.Burst < 0 || r.RetryAfter < 0 {
		errs = append(errs, config.Fieldf("payloads.relay", "values must not be negative"))
	}
	pol := payload.RelayPolicy{PathPrefixes: r.PathPrefixes, SizeThreshold: r.SizeThreshold}
	if err := pol.Validate(); err != nil {
		errs = append(errs, fieldErrors("payloads.relay", err)...)
	}
	return errs
}

// fieldErrors turns payload.FieldErrors under parent into config field
// errors, so that config files point at their lines.
func fieldErrors(parent string, err error) []error {
	var out []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *payload.FieldError
		if errors.As(err, &fe) {
			out = append(out, config.Field(fieldPath(parent, fe.Field), fe.Err))
			return
		}
		out = append(out, config.Field(parent, err))
	}
	walk(err)
	return out
}

// fieldPath joins a payload field name ("sources" or "sources[2]") to a
// config path.
func fieldPath(parent, field string) string {
	name, idx, ok := strings.Cut(field, "[")
	i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
	if !ok || err != nil {
		return config.Key(parent, field)
	}
	return config.Index(config.Key(parent, name), i)
}

func (r RelayConfig) budget() payload.BudgetConfig {
	return payload.BudgetConfig{MaxConcurrent: r.MaxConcurrent, BytesPerSecond: r.BytesPerSecond, Burst: r.Burst}
}

// catalogFile is the catalog file's format.
type catalogFile struct {
	Payloads []catalogEntry `yaml:"payloads"`
}

type catalogEntry struct {
	Path    string    `yaml:"path"`
	SHA256  string    `yaml:"sha256"`
	Size    int64     `yaml:"size" config:"bytes"`
	Sources []string  `yaml:"sources"`
	Expires time.Time `yaml:"expires"` // optional, RFC 3339
}

// Validate checks every entry, naming the field of each problem.
func (f *catalogFile) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, ce := range f.Payloads {
		path := config.Index("payloads", i)
		e := ce.entry()
		if err := e.Validate(); err != nil {
			errs = append(errs, fieldErrors(path, err)...)
		}
		if j, dup := seen[e.Path]; dup {
			errs = append(errs, config.Fieldf(config.Key(path, "path"), "%s is also payloads[%d]", e.Path, j))
		}
		seen[e.Path] = i
	}
	return errors.Join(errs...)
}

func (ce catalogEntry) entry() payload.Entry {
	return payload.Entry{Path: ce.Path, SHA256: ce.SHA256, Size: ce.Size, Sources: ce.Sources, Expires: ce.Expires}
}

// catalog is a loaded catalog file: its entries, not yet signed, and what
// it was loaded from.
type catalog struct {
	entries []payload.Entry
	stamp   fileStamp
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	modTime time.Time
	size    int64
	sum     [sha256.Size]byte
}

// loadCatalog reads and validates a catalog file. Entries that expired
// already are an error: the file is stale.
func loadCatalog(path string, now time.Time) (*catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("payload catalog: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("payload catalog: %w", err)
	}
	var f catalogFile
	if err := config.Decode(path, data, &f); err != nil {
		return nil, fmt.Errorf("payload catalog: %w", err)
	}
	c := &catalog{stamp: fileStamp{modTime: fi.ModTime(), size: fi.Size(), sum: sha256.Sum256(data)}}
	for i, ce := range f.Payloads {
		if !ce.Expires.IsZero() && !ce.Expires.After(now) {
			return nil, fmt.Errorf("payload catalog: %s: payloads[%d] (%s): expired at %s", path, i, ce.Path, ce.Expires.Format(time.RFC3339))
		}
		c.entries = append(c.entries, ce.entry())
	}
	return c, nil
}

// LoadCatalogFile reads and validates a payload catalog file as the
// connector would ("sekisho catalog check").
func LoadCatalogFile(path string, now time.Time) ([]payload.Entry, error) {
	c, err := loadCatalog(path, now)
	if err != nil {
		return nil, err
	}
	return c.entries, nil
}

// changed reports whether the file at path differs from what was loaded.
func (s fileStamp) changed(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return true // a vanished file is reported by the reload
	}
	if fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return false
	}
	data, err := os.ReadFile(path)
	return err != nil || sha256.Sum256(data) != s.sum
}

// loadSigners loads the catalog signing keys.
func loadSigners(p PayloadsConfig) ([]*payload.Signer, error) {
	keys := p.Keys
	for i, f := range p.SigningKeys {
		k, err := certs.LoadKey(f)
		if err != nil {
			return nil, fmt.Errorf("payloads.signing_keys[%d]: %w", i, err)
		}
		ed, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("payloads.signing_keys[%d]: %s: want an Ed25519 key, got %T", i, f, k)
		}
		keys = append(keys, ed)
	}
	var out []*payload.Signer
	seen := map[string]bool{}
	for i, k := range keys {
		s, err := payload.NewSigner(k)
		if err != nil {
			return nil, fmt.Errorf("payloads.signing_keys[%d]: %w", i, err)
		}
		if seen[s.Public().ID] {
			return nil, fmt.Errorf("payloads.signing_keys[%d]: key %s listed twice", i, s.Public().ID)
		}
		seen[s.Public().ID] = true
		out = append(out, s)
	}
	return out, nil
}

// signCatalog signs entries with the first signer, each valid until the
// earlier of its own expiry and now + lifetime, and encodes the catalog
// for the snapshot. Entries past their expiry are left out.
func signCatalog(tenant string, c *catalog, signers []*payload.Signer, p PayloadsConfig, now time.Time) (json.RawMessage, int, error) {
	pc := payload.Catalog{Relay: payload.RelayPolicy{PathPrefixes: p.Relay.PathPrefixes, SizeThreshold: p.Relay.SizeThreshold}}
	if c != nil {
		for _, e := range c.entries {
			exp := now.Add(p.SignatureLifetime)
			if !e.Expires.IsZero() && e.Expires.Before(exp) {
				exp = e.Expires
			}
			if !exp.After(now) {
				continue
			}
			e.Expires = exp
			s, err := signers[0].Sign(tenant, e)
			if err != nil {
				return nil, 0, fmt.Errorf("sign catalog entry %s: %w", e.Path, err)
			}
			pc.Entries = append(pc.Entries, s)
		}
	}
	if len(pc.Entries) == 0 && len(pc.Relay.PathPrefixes) == 0 && pc.Relay.SizeThreshold == 0 {
		return nil, 0, nil
	}
	raw, err := json.Marshal(&pc)
	if err != nil {
		return nil, 0, err
	}
	if len(raw) > tunnel.MaxSnapshotLen/2 {
		return nil, 0, fmt.Errorf("payload catalog: %d bytes signed, more than half the snapshot limit", len(raw))
	}
	return raw, len(pc.Entries), nil
}

// watchCatalog re-reads the catalog file when it changes and re-signs
// the entries at half their signature lifetime. A file that does not load
// is refused whole: the catalog in force stays, and the problem is logged
// once per version of the file.
func (c *Connector) watchCatalog(ctx context.Context) {
	var refused fileStamp
	lastSigned := c.cfg.Now()
	for {
		st := c.current()
		p := st.cfg.Payloads
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.WatchInterval):
		}
		now := c.cfg.Now()
		switch {
		case p.Catalog != "" && st.catalog != nil && st.catalog.stamp.changed(p.Catalog):
			cat, err := loadCatalog(p.Catalog, now)
			if err != nil {
				if s := currentStamp(p.Catalog); s != refused {
					refused = s
					c.metrics.catalogLoads.WithLabelValues("refused").Inc()
					c.events.Add(admin.Event{Time: now, Kind: "catalog", Reason: "refused: previous catalog kept"})
					c.log.Error("payload catalog refused, previous catalog kept", zap.Error(err))
				}
				continue
			}
			c.publishCatalog(ctx, "catalog changed", func(next *state) { next.catalog = cat })
			lastSigned = now
		case len(st.signers) > 0 && now.Sub(lastSigned) >= p.SignatureLifetime/2:
			c.publishCatalog(ctx, "catalog re-signed", nil)
			lastSigned = now
		}
	}
}

func (c *Connector) publishCatalog(ctx context.Context, why string, mutate func(*state)) {
	if err := c.republish(ctx, why, mutate); err != nil {
		c.metrics.catalogLoads.WithLabelValues("refused").Inc()
		c.log.Error("payload catalog not published", zap.String("why", why), zap.Error(err))
		return
	}
	c.metrics.catalogLoads.WithLabelValues("ok").Inc()
	c.events.Add(admin.Event{Time: c.cfg.Now(), Kind: "catalog", Reason: why})
}

// currentStamp stamps the file as it is now (zero when unreadable).
func currentStamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size(), sum: sha256.Sum256(data)}
}
