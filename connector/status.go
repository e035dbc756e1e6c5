package connector

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/tunnel"
)

// gatewayStatus reports each gateway target, sorted by address.
func (c *Connector) gatewayStatus() []admin.Gateway {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []admin.Gateway
	for _, t := range c.targets {
		g := admin.Gateway{Address: t.addr, Sessions: int(t.up.Load()), Wanted: len(t.slots), Transport: tunnel.TransportTCP}
		if p := t.transport.Load(); p != nil {
			g.Transport = *p
		}
		if p := t.lastErr.Load(); p != nil {
			g.LastError = *p
		}
		if ns := t.upSince.Load(); ns != 0 {
			g.UpSince = time.Unix(0, ns)
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b admin.Gateway) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Status is the document of the admin API's /api/status.
func (c *Connector) Status() *admin.Status {
	now := c.cfg.Now()
	st := c.current()
	ready := c.Ready()
	out := &admin.Status{Role: "connector", ID: c.cfg.ID, Version: Version, Started: c.started, Now: now,
		Ready: ready == nil, Tenant: c.cfg.Tenant, Gateways: c.gatewayStatus(),
		Totals:         admin.Totals{Agents: map[string]int{}},
		SeriesInterval: c.series.Interval().Seconds(), Series: c.series.Points(), Events: c.events.Recent()}
	if ready != nil {
		out.NotReady = ready.Error()
	}
	for _, g := range out.Gateways {
		out.Totals.Sessions += g.Sessions
	}
	for _, sc := range st.cfg.Services {
		svc := st.services[sc.Name]
		out.Services = append(out.Services, admin.Service{Name: svc.name, Address: svc.addr,
			StreamsActive: svc.active.Load(), Streams: float64(svc.streams.Load()), Errors: float64(svc.errors.Load())})
	}
	for _, ca := range st.bundle {
		out.Certificates = append(out.Certificates, admin.Certificate{Kind: "agent_ca", Tenant: c.cfg.Tenant,
			Subject: ca.Subject.String(), NotAfter: ca.NotAfter, ExpiresIn: ca.NotAfter.Sub(now).Seconds()})
	}
	k := c.counters()
	out.Totals.Requests, out.Totals.Errors, out.Totals.BytesRelayed = k.Requests, k.Errors, k.Relayed
	return out
}

// counters are the totals the status page's plot samples: streams served
// count as requests, refused ones as errors.
func (c *Connector) counters() admin.Counters {
	m := c.metrics
	return admin.Counters{Requests: float64(m.totalStreams.Load()), Errors: float64(m.totalRefused.Load()),
		Relayed: float64(m.totalRelayed.Load())}
}

// Ready reports whether at least one gateway session is up.
func (c *Connector) Ready() error {
	if c.Sessions() > 0 {
		return nil
	}
	return errors.New("no gateway session up")
}

// Snapshot is a copy of the snapshot the connector pushes now.
func (c *Connector) Snapshot() tunnel.Snapshot {
	snap := *c.current().snap
	snap.Revocations = slices.Clone(snap.Revocations)
	snap.Services = slices.Clone(snap.Services)
	return snap
}
