package gateway

import (
	"errors"
	"slices"
	"time"

	"github.com/sekisho/sekisho/internal/admin"
)

// TenantStatus is a tenant's state as the gateway sees it.
type TenantStatus = admin.Tenant

// Tenants reports every tenant's state, sorted by name.
func (s *Server) Tenants() []TenantStatus {
	now := s.cfg.Now()
	var out []TenantStatus
	for _, t := range s.tenantList() {
		out = append(out, t.view(now).status(t))
	}
	return out
}

// tenantView is a consistent read of a tenant's live state.
type tenantView struct {
	st         *state
	agents     map[string]int // by transport
	streams    int
	connectors []admin.Connector
}

func (t *tenant) view(now time.Time) tenantView {
	v := tenantView{st: t.state.Load()}
	t.mu.Lock()
	defer t.mu.Unlock()
	v.agents = map[string]int{}
	for _, c := range t.conns {
		v.agents[c.transport()]++
	}
	for _, s := range t.liveLocked() {
		v.streams += s.sess.NumStreams()
		i := slices.IndexFunc(v.connectors, func(c admin.Connector) bool {
			return c.ID == s.connectorID && c.Transport == s.sess.Transport()
		})
		if i < 0 {
			v.connectors = append(v.connectors, admin.Connector{ID: s.connectorID, Transport: s.sess.Transport(), Since: s.since})
			i = len(v.connectors) - 1
		}
		v.connectors[i].Sessions++
		if s.since.Before(v.connectors[i].Since) {
			v.connectors[i].Since = s.since
		}
	}
	return v
}

func (v tenantView) status(t *tenant) admin.Tenant {
	ts := admin.Tenant{Name: t.name, Connectors: v.connectors, Agents: v.agents,
		Requests: float64(t.requests.Load()), Errors: float64(t.errors.Load())}
	if ts.Connectors == nil {
		ts.Connectors = []admin.Connector{}
	}
	for _, c := range v.connectors {
		ts.Sessions += c.Sessions
	}
	if v.st != nil {
		ts.Served = true
		ts.SnapshotEpoch, ts.SnapshotVersion = v.st.snap.Epoch, v.st.snap.Version
		ts.SnapshotAt, ts.Services = v.st.received, len(v.st.snap.Services)
	}
	return ts
}

// Status is the document of the admin API's /api/status.
func (s *Server) Status() *admin.Status {
	now := s.cfg.Now()
	ready := s.Ready()
	st := &admin.Status{Role: "gateway", ID: s.cfg.ID, Version: s.cfg.Version, Started: s.started, Now: now,
		Ready: ready == nil, Totals: admin.Totals{Agents: map[string]int{}},
		Latency: s.latency.Summary(time.Now()), SeriesInterval: s.series.Interval().Seconds(),
		Series: s.series.Points(), Events: s.events.Recent()}
	if ready != nil {
		st.NotReady = ready.Error()
	}
	if leaf := s.servingLeaf(); leaf != nil {
		st.Certificates = append(st.Certificates, certStatus("serving", "", leaf.Subject.String(), leaf.NotAfter, now))
	}
	for _, t := range s.tenantList() {
		v := t.view(now)
		ts := v.status(t)
		st.Tenants = append(st.Tenants, ts)
		st.Totals.Sessions += ts.Sessions
		for k, n := range ts.Agents {
			st.Totals.Agents[k] += n
		}
		if v.st != nil {
			for _, ca := range v.st.cas {
				st.Certificates = append(st.Certificates, certStatus("agent_ca", t.name, ca.Subject.String(), ca.NotAfter, now))
			}
		}
	}
	c := s.counters()
	st.Totals.Requests, st.Totals.Errors, st.Totals.BytesRelayed, st.Totals.BytesRedirected = c.Requests, c.Errors, c.Relayed, c.Redirected
	return st
}

func certStatus(kind, tenant, subject string, notAfter, now time.Time) admin.Certificate {
	return admin.Certificate{Kind: kind, Tenant: tenant, Subject: subject, NotAfter: notAfter,
		ExpiresIn: notAfter.Sub(now).Seconds()}
}

// counters are the totals the status page's plot samples.
func (s *Server) counters() admin.Counters {
	m := s.metrics
	return admin.Counters{Requests: float64(m.totalRequests.Load()), Errors: float64(m.totalErrors.Load()),
		Relayed: float64(m.totalRelayed.Load()), Redirected: float64(m.totalRedirected.Load())}
}

// Ready reports whether the gateway should receive traffic: it listens and
// at least one tenant has a snapshot. One tenant without a connector does
// not take the gateway out of a load balancer; its agents get 503.
func (s *Server) Ready() error {
	select {
	case <-s.ready:
	default:
		return errors.New("not listening yet")
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("shutting down")
	}
	if err := s.certReady(); err != nil {
		return err
	}
	for _, t := range s.tenantList() {
		if t.state.Load() != nil {
			return nil
		}
	}
	return errors.New("no tenant has a snapshot yet")
}
