package gateway

import (
	"slices"
	"strings"
	"time"
)

// TenantStatus is a tenant's state as the gateway sees it.
type TenantStatus struct {
	Name string `json:"name"`
	// Served is true once a snapshot has arrived.
	Served          bool      `json:"served"`
	SnapshotEpoch   string    `json:"snapshot_epoch,omitempty"`
	SnapshotVersion uint64    `json:"snapshot_version,omitempty"`
	SnapshotAt      time.Time `json:"snapshot_at,omitzero"`
	Services        int       `json:"services"`
	// Sessions counts live connector sessions; Connectors lists their ids.
	Sessions   int      `json:"sessions"`
	Connectors []string `json:"connectors"`
}

// Tenants reports every tenant's state, sorted by name.
func (s *Server) Tenants() []TenantStatus {
	out := make([]TenantStatus, 0, len(s.tenants))
	for _, t := range s.tenants {
		ts := TenantStatus{Name: t.name}
		if st := t.state.Load(); st != nil {
			ts.Served = true
			ts.SnapshotEpoch, ts.SnapshotVersion = st.snap.Epoch, st.snap.Version
			ts.SnapshotAt, ts.Services = st.received, len(st.snap.Services)
		}
		t.mu.Lock()
		live := t.liveLocked()
		ts.Sessions = len(live)
		for _, s := range live {
			if !slices.Contains(ts.Connectors, s.connectorID) {
				ts.Connectors = append(ts.Connectors, s.connectorID)
			}
		}
		t.mu.Unlock()
		out = append(out, ts)
	}
	slices.SortFunc(out, func(a, b TenantStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}
