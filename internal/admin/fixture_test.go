package admin

import (
	"math"
	"time"
)

const day = 24 * time.Hour

// series returns n points every interval ending at end, with a gentle wave
// of traffic, so that a plot of it has something to show.
func series(end time.Time, interval time.Duration, n int) []Point {
	pts := make([]Point, n)
	for i := range pts {
		x := float64(i)
		pts[i] = Point{
			Time:       end.Add(-time.Duration(n-1-i) * interval),
			Requests:   4 + 2.5*math.Sin(x/4) + 0.8*math.Sin(x*1.7),
			Relayed:    2.2e6 + 1.4e6*math.Sin(x/5),
			Redirected: 6e5 + 4e5*math.Cos(x/3),
		}
		if i%7 == 3 {
			pts[i].Errors = 0.3
		}
	}
	return pts
}

// relayedOnly drops the redirected bytes of pts: a connector relays all.
func relayedOnly(pts []Point) []Point {
	for i := range pts {
		pts[i].Redirected = 0
	}
	return pts
}

// gatewayFixture is a gateway with two tenants: acme, served by conn-acme
// over two sessions with five agents, and globex, which has no snapshot.
func gatewayFixture(now time.Time) Status {
	return Status{
		Role: "gateway", ID: "gw-tokyo-1", Version: "v0.4.0-test",
		Started: now.Add(-(3*time.Hour + 17*time.Minute)), Now: now, Ready: true,
		Certificates: []Certificate{
			{Kind: "serving", Subject: "CN=gateway.example.test", NotAfter: now.Add(2 * day), ExpiresIn: (2 * day).Seconds()},
			{Kind: "agent_ca", Tenant: "acme", Subject: "CN=acme agents CA", NotAfter: now.Add(300 * day), ExpiresIn: (300 * day).Seconds()},
			{Kind: "connector_ca", Tenant: "acme", Subject: "CN=acme connectors CA", NotAfter: now.Add(10 * day), ExpiresIn: (10 * day).Seconds()},
			{Kind: "agent_ca", Tenant: "globex", Subject: "CN=globex agents CA", NotAfter: now.Add(400 * day), ExpiresIn: (400 * day).Seconds()},
		},
		Totals: Totals{
			Agents: map[string]int{"quic": 3, "tls": 2}, Sessions: 2,
			Requests: 1234, Errors: 7, BytesRelayed: 3.2 * (1 << 30), BytesRedirected: 1.1 * (1 << 30),
		},
		Latency: Latency{WindowSeconds: 60, Count: 345, P50ms: 12.5, P99ms: 180},
		Tenants: []Tenant{
			{
				Name: "acme", Served: true, SnapshotEpoch: "e-7f3a", SnapshotVersion: 42,
				SnapshotAt: now.Add(-95 * time.Second), Services: 4, Sessions: 2,
				Connectors: []Connector{{ID: "conn-acme", Transport: "quic", Sessions: 2, Since: now.Add(-2 * time.Hour)}},
				Agents:     map[string]int{"quic": 3, "tls": 2}, Requests: 1200, Errors: 7,
			},
			{Name: "globex", Requests: 34},
		},
		SeriesInterval: 10,
		Series:         series(now, 10*time.Second, 30),
		Events: []Event{
			{Time: now.Add(-40 * time.Second), Kind: "refused", Reason: `agent certificate revoked <img src=x onerror="alert(1)">`,
				Tenant: "acme", Remote: "203.0.113.7:50312"},
			{Time: now.Add(-5 * time.Minute), Kind: "reload", Reason: "config reloaded"},
			{Time: now.Add(-12 * time.Minute), Kind: "refused", Reason: "unknown tenant", Remote: "198.51.100.23:4433"},
		},
	}
}

// connectorFixture is acme's connector: one gateway up, one down.
func connectorFixture(now time.Time) Status {
	return Status{
		Role: "connector", ID: "conn-acme", Version: "v0.4.0-test",
		Started: now.Add(-26 * time.Hour), Now: now,
		NotReady: "gateway gw2.example.test:443: no session",
		Certificates: []Certificate{
			{Kind: "serving", Tenant: "acme", Subject: "CN=conn-acme", NotAfter: now.Add(9 * day), ExpiresIn: (9 * day).Seconds()},
		},
		Totals:  Totals{Sessions: 2, Requests: 857, Errors: 2, BytesRelayed: 900 << 20},
		Latency: Latency{WindowSeconds: 60, Count: 41, P50ms: 3.2, P99ms: 48},
		Tenant:  "acme",
		Gateways: []Gateway{
			{Address: "gw1.example.test:443", Sessions: 2, Wanted: 2, Transport: "quic", UpSince: now.Add(-2 * time.Hour)},
			{Address: "gw2.example.test:443", Wanted: 2, Transport: "tls", LastError: "dial tcp 192.0.2.10:443: i/o timeout"},
		},
		Services: []Service{
			{Name: "intranet", Address: "10.0.0.5:443", StreamsActive: 3, Streams: 812, Errors: 2},
			{Name: "git", Address: "10.0.0.9:22", Streams: 45},
		},
		SeriesInterval: 10,
		Series:         relayedOnly(series(now, 10*time.Second, 12)),
		Events: []Event{
			{Time: now.Add(-3 * time.Minute), Kind: "session", Reason: "gw2.example.test:443: i/o timeout"},
			{Time: now.Add(-2 * time.Hour), Kind: "session", Reason: "gw1.example.test:443 up"},
		},
	}
}
