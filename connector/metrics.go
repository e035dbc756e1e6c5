package connector

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the connector's Prometheus series; labels are bounded by the
// config (gateway addresses, service names) and fixed sets (statuses).
type metrics struct {
	reconnects       *prometheus.CounterVec
	streams          *prometheus.CounterVec
	bytes            *prometheus.CounterVec
	snapshotRefusals *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	catalogLoads     *prometheus.CounterVec
	payloadStreams   *prometheus.CounterVec
	paced            *prometheus.CounterVec

	totalRelayed, totalStreams, totalRefused atomic.Int64
}

func newMetrics(reg prometheus.Registerer, c *Connector) *metrics {
	m := &metrics{
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_reconnects_total",
			Help: "Session redials after a session ended or a dial failed, by gateway.",
		}, []string{"gateway"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_streams_total",
			Help: "Streams the gateways opened, by service and the status answered.",
		}, []string{"service", "status"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_relayed_bytes_total",
			Help: "Bytes spliced between streams and services (up: toward the service), by service.",
		}, []string{"service", "direction"}),
		snapshotRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_snapshot_refusals_total",
			Help: "Snapshots a gateway refused, by gateway.",
		}, []string{"gateway"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_reloads_total",
			Help: "Configuration reloads by result.",
		}, []string{"result"}),
		catalogLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_catalog_loads_total",
			Help: "Payload catalog publications (file changed, re-signed) by result; refused keeps the catalog in force.",
		}, []string{"result"}),
		payloadStreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_payload_streams_total",
			Help: "Payload download streams by result: admitted, or refused over the concurrent download budget.",
		}, []string{"result"}),
		paced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_connector_paced_bytes_total",
			Help: "Bytes that left the LAN under the relay budget, by stream kind (payload, connect).",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.reconnects, m.streams, m.bytes, m.snapshotRefusals, m.reloads, m.catalogLoads,
		m.payloadStreams, m.paced, &stateCollector{c: c})
	return m
}

// stateCollector reads gauges from the connector's live state at scrape
// time.
type stateCollector struct{ c *Connector }

var (
	descSessions = prometheus.NewDesc("sekisho_connector_sessions",
		"Gateway sessions up (snapshot accepted), by gateway and transport.", []string{"gateway", "transport"}, nil)
	descActive = prometheus.NewDesc("sekisho_connector_streams_active",
		"Streams being spliced now, by service.", []string{"service"}, nil)
	descSnapVersion = prometheus.NewDesc("sekisho_connector_snapshot_version",
		"Version of the snapshot the connector pushes.", nil, nil)
	descPayloadActive = prometheus.NewDesc("sekisho_connector_payload_downloads_active",
		"Payload downloads relayed now (the concurrent download budget's slots taken).", nil, nil)
	descCatalogEntries = prometheus.NewDesc("sekisho_connector_catalog_entries",
		"Signed payload catalog entries in the pushed snapshot.", nil, nil)
	descExpiry = prometheus.NewDesc("sekisho_certificate_expiry_seconds",
		"Seconds until the earliest expiry among the tenant's agent CA certificates.", []string{"kind", "tenant"}, nil)
)

func (sc *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descActive, descSnapVersion, descExpiry, descPayloadActive, descCatalogEntries} {
		ch <- d
	}
}

func (sc *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c := sc.c
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.current()
	gauge(descSnapVersion, float64(st.snap.Version))
	gauge(descPayloadActive, float64(c.budget.Active()))
	gauge(descCatalogEntries, float64(st.entries))
	for _, svc := range st.services {
		gauge(descActive, float64(svc.active.Load()), svc.name)
	}
	for _, gs := range c.gatewayStatus() {
		gauge(descSessions, float64(gs.Sessions), gs.Address, gs.Transport)
	}
	if len(st.bundle) > 0 {
		first := st.bundle[0].NotAfter
		for _, ca := range st.bundle[1:] {
			if ca.NotAfter.Before(first) {
				first = ca.NotAfter
			}
		}
		gauge(descExpiry, first.Sub(c.cfg.Now()).Seconds(), "agent_ca", st.cfg.Tenant)
	}
}
