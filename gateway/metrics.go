package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sekisho/sekisho/tunnel"
)

// metrics are the gateway's Prometheus series. Labels are bounded: tenant
// and service come from config and snapshots, connector ids from pinned
// connectors, reasons and codes from fixed sets; never a device id.
type metrics struct {
	handshakes      *prometheus.CounterVec
	requests        *prometheus.HistogramVec
	bytes           *prometheus.CounterVec
	streamsOpened   *prometheus.CounterVec
	streamRefusals  *prometheus.CounterVec
	budgetRefusals  *prometheus.CounterVec
	unavailable     *prometheus.CounterVec
	snapshots       *prometheus.CounterVec
	sessionsOpened  *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	enrollments     *prometheus.CounterVec
	redirects       *prometheus.CounterVec
	redirectedBytes *prometheus.CounterVec
	payloadBytes    *prometheus.CounterVec
	reclassified    *prometheus.CounterVec

	// Totals for the status page, cheaper to read than the vectors.
	totalRequests, totalErrors, totalRelayed, totalRedirected atomic.Int64
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_handshakes_total",
			Help: "TLS handshakes on the gateway port by peer kind, result and refusal reason.",
		}, []string{"kind", "result", "reason"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sekisho_gateway_request_duration_seconds",
			Help:    "Agent request durations, until the response is complete, by tenant, service and status class.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"tenant", "service", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_relayed_bytes_total",
			Help: "Body bytes relayed through tunnels, by tenant and direction (up: agent to core, down: core to agent).",
		}, []string{"tenant", "direction"}),
		streamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_tunnel_streams_opened_total",
			Help: "Tunnel streams the gateway opened, by tenant and stream kind.",
		}, []string{"tenant", "kind"}),
		streamRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_stream_refusals_total",
			Help: "Streams the connector refused, by tenant and status.",
		}, []string{"tenant", "status"}),
		budgetRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_budget_refusals_total",
			Help: "Requests answered 503 because a relay budget was spent, by tenant.",
		}, []string{"tenant"}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_no_connector_total",
			Help: "Requests answered 503 because the tenant had no connector session.",
		}, []string{"tenant"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_snapshots_total",
			Help: "Snapshots received from connectors, by tenant and result (applied, stale, refused).",
		}, []string{"tenant", "result"}),
		sessionsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_tunnel_sessions_opened_total",
			Help: "Connector sessions admitted, by tenant and transport (reconnects show here).",
		}, []string{"tenant", "transport"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_reloads_total",
			Help: "Configuration reloads by result.",
		}, []string{"result"}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_enrollments_total",
			Help: "Enrollment requests by tenant, operation (enroll, poll, renew) and result.",
		}, []string{"tenant", "op", "result"}),
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_payload_redirects_total",
			Help: "Catalogued payload requests redirected, by tenant and the first source's host.",
		}, []string{"tenant", "source"}),
		redirectedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_payload_redirected_bytes_total",
			Help: "Payload bytes sent elsewhere by redirects (the catalogued size of each GET redirected), by tenant.",
		}, []string{"tenant"}),
		payloadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_payload_relayed_bytes_total",
			Help: "Response bytes of requests relayed as payload (catalog relay entries, payload prefixes, large responses), by tenant.",
		}, []string{"tenant"}),
		reclassified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_gateway_payload_reclassified_total",
			Help: "Management requests whose response was above the size threshold and that were sent again as payload, by tenant.",
		}, []string{"tenant"}),
	}
	reg.MustRegister(m.handshakes, m.requests, m.bytes, m.streamsOpened, m.streamRefusals, m.budgetRefusals,
		m.unavailable, m.snapshots, m.sessionsOpened, m.reloads, m.enrollments, m.redirects, m.redirectedBytes,
		m.payloadBytes, m.reclassified, &stateCollector{s: s})
	return m
}

// stateCollector reads gauges from the gateway's live state at scrape time.
type stateCollector struct{ s *Server }

var (
	descAgents = prometheus.NewDesc("sekisho_gateway_agent_connections",
		"Live agent connections by tenant and transport.", []string{"tenant", "transport"}, nil)
	descSessions = prometheus.NewDesc("sekisho_tunnel_sessions",
		"Live connector sessions by tenant, connector and transport.", []string{"tenant", "connector_id", "transport"}, nil)
	descStreams = prometheus.NewDesc("sekisho_tunnel_streams_active",
		"Open tunnel streams by tenant.", []string{"tenant"}, nil)
	descServed = prometheus.NewDesc("sekisho_gateway_tenant_served",
		"1 when the tenant has a snapshot (its agents can connect).", []string{"tenant"}, nil)
	descSnapVersion = prometheus.NewDesc("sekisho_gateway_snapshot_version",
		"Version of the tenant's snapshot in force.", []string{"tenant"}, nil)
	descRevocations = prometheus.NewDesc("sekisho_gateway_revocations",
		"Revoked agent certificates in the tenant's snapshot in force (refused at the handshake).", []string{"tenant"}, nil)
	descCatalog = prometheus.NewDesc("sekisho_gateway_catalog_entries",
		"Signed payload catalog entries in the tenant's snapshot in force.", []string{"tenant"}, nil)
	descExpiry = prometheus.NewDesc("sekisho_certificate_expiry_seconds",
		"Seconds until the earliest expiry among certificates of a kind (serving: the gateway's own; agent_ca: a tenant's bundle).",
		[]string{"kind", "tenant"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAgents, descSessions, descStreams, descServed, descSnapVersion, descExpiry,
		descRevocations, descCatalog} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.s.cfg.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if leaf := c.s.servingLeaf(); leaf != nil {
		gauge(descExpiry, leaf.NotAfter.Sub(now).Seconds(), "serving", "")
	}
	for _, t := range c.s.tenantList() {
		v := t.view(now)
		for _, tr := range []string{tunnel.TransportTCP, tunnel.TransportQUIC} {
			gauge(descAgents, float64(v.agents[tr]), t.name, tr)
		}
		for _, cs := range v.connectors {
			gauge(descSessions, float64(cs.Sessions), t.name, cs.ID, cs.Transport)
		}
		gauge(descStreams, float64(v.streams), t.name)
		served := 0.0
		if v.st != nil {
			served = 1
			gauge(descSnapVersion, float64(v.st.snap.Version), t.name)
			gauge(descRevocations, float64(len(v.st.snap.Revocations)), t.name)
			gauge(descCatalog, float64(v.st.catalog.Len()), t.name)
			if exp, ok := v.st.earliestExpiry(); ok {
				gauge(descExpiry, exp.Sub(now).Seconds(), "agent_ca", t.name)
			}
		}
		gauge(descServed, served, t.name)
	}
}

// codeClass turns a status into its class label ("2xx").
func codeClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	case code >= 200:
		return "2xx"
	default:
		return "1xx"
	}
}
