package admin

import "time"

// Status is the document of GET /api/status, for both roles; each fills
// the parts that concern it. The status page renders it.
type Status struct {
	Role     string    `json:"role"` // "gateway" or "connector"
	ID       string    `json:"id"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Now      time.Time `json:"now"`
	Ready    bool      `json:"ready"`
	NotReady string    `json:"not_ready,omitempty"` // why not, when not ready

	Certificates []Certificate `json:"certificates"`
	Totals       Totals        `json:"totals"`
	Latency      Latency       `json:"latency"`

	// Gateway only.
	Tenants []Tenant `json:"tenants,omitempty"`
	// Connector only.
	Tenant   string    `json:"tenant,omitempty"`
	Gateways []Gateway `json:"gateways,omitempty"`
	Services []Service `json:"services,omitempty"`

	SeriesInterval float64 `json:"series_interval_seconds"`
	Series         []Point `json:"series"` // oldest first
	Events         []Event `json:"events"` // newest first
}

// Certificate is one certificate whose expiry operators watch.
type Certificate struct {
	Kind      string    `json:"kind"` // "serving", "agent_ca", "connector_ca"
	Tenant    string    `json:"tenant,omitempty"`
	Subject   string    `json:"subject"`
	NotAfter  time.Time `json:"not_after"`
	ExpiresIn float64   `json:"expires_in_seconds"`
}

// Totals are counters since start, and current gauges.
type Totals struct {
	Agents          map[string]int `json:"agents"` // live agent connections by transport
	Sessions        int            `json:"sessions"`
	Requests        float64        `json:"requests"`
	Errors          float64        `json:"errors"`
	BytesRelayed    float64        `json:"bytes_relayed"`
	BytesRedirected float64        `json:"bytes_redirected"`
}

// Latency summarises request durations over the last Window seconds.
type Latency struct {
	WindowSeconds float64 `json:"window_seconds"`
	Count         uint64  `json:"count"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
}

// Tenant is a gateway's view of one tenant.
type Tenant struct {
	Name            string         `json:"name"`
	Served          bool           `json:"served"` // a snapshot has arrived
	SnapshotEpoch   string         `json:"snapshot_epoch,omitempty"`
	SnapshotVersion uint64         `json:"snapshot_version,omitempty"`
	SnapshotAt      time.Time      `json:"snapshot_at,omitzero"`
	Services        int            `json:"services"`
	Sessions        int            `json:"sessions"`
	Connectors      []Connector    `json:"connectors"`
	Agents          map[string]int `json:"agents"` // by transport
	Requests        float64        `json:"requests"`
	Errors          float64        `json:"errors"`
}

// Connector is one connector serving a tenant, as a gateway sees it.
type Connector struct {
	ID        string    `json:"id"`
	Transport string    `json:"transport"`
	Sessions  int       `json:"sessions"`
	Since     time.Time `json:"since"`
}

// Gateway is one gateway a connector dials.
type Gateway struct {
	Address   string    `json:"address"`
	Sessions  int       `json:"sessions"` // up, snapshot accepted
	Wanted    int       `json:"wanted"`
	Transport string    `json:"transport"`
	LastError string    `json:"last_error,omitempty"`
	UpSince   time.Time `json:"up_since,omitzero"`
}

// Service is one internal service a connector relays to.
type Service struct {
	Name          string  `json:"name"`
	Address       string  `json:"address"`
	StreamsActive int64   `json:"streams_active"`
	Streams       float64 `json:"streams"`
	Errors        float64 `json:"errors"`
}
