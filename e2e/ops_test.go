package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
	"github.com/sekisho/sekisho/internal/admin"
)

// scrape reads a Prometheus text page into "name{labels}" -> value.
func scrape(t testing.TB, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the series of a metric whose labels contain every given pair.
func sum(m map[string]float64, name string, labels ...string) float64 {
	var total float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(k, l)
		}
		if ok {
			total += v
		}
	}
	return total
}

func adminURL(a interface{ String() string }) string { return "http://" + a.String() }

// TestMetricsMove scrapes both roles, runs traffic, scrapes again: the
// series that should move moved, the gauges say what is live.
func TestMetricsMove(t *testing.T) {
	acme := newTenant(t, "acme")
	w := startGateway(t, nil, acme)
	core := startCore(t, bigPayload(1<<20))
	cn := w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 2)
	gw, cm := adminURL(w.gw.AdminAddr()), fmt.Sprint("http://", cn.c.AdminAddr())

	before, cbefore := scrape(t, gw), scrape(t, cm)
	cert := certstest.Agent(t, acme.ca, "pc-1")
	client := w.agent(&cert, true)
	for range 10 {
		if code, _ := status(t, client, w.url("/big")); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	after, cafter := scrape(t, gw), scrape(t, cm)

	moved := []struct {
		name    string
		m0, m1  map[string]float64
		labels  []string
		atLeast float64
	}{
		{"sekisho_gateway_request_duration_seconds_count", before, after, []string{`tenant="acme"`, `code="2xx"`}, 10},
		{"sekisho_gateway_relayed_bytes_total", before, after, []string{`direction="down"`}, 10 << 20},
		{"sekisho_gateway_handshakes_total", before, after, []string{`kind="agent"`, `result="ok"`}, 1},
		{"sekisho_tunnel_streams_opened_total", before, after, nil, 0},
		{"sekisho_connector_streams_total", cbefore, cafter, []string{`status="ok"`}, 0},
		{"sekisho_connector_relayed_bytes_total", cbefore, cafter, []string{`direction="down"`}, 10 << 20},
	}
	for _, m := range moved {
		d := sum(m.m1, m.name, m.labels...) - sum(m.m0, m.name, m.labels...)
		if d < m.atLeast || (m.atLeast == 0 && d < 0) {
			t.Errorf("%s%v moved by %v, want at least %v", m.name, m.labels, d, m.atLeast)
		}
	}
	gauges := []struct {
		name   string
		labels []string
		want   func(float64) bool
	}{
		{"sekisho_tunnel_sessions", []string{`tenant="acme"`, `transport="tcp"`}, func(v float64) bool { return v == 2 }},
		{"sekisho_gateway_agent_connections", []string{`tenant="acme"`}, func(v float64) bool { return v >= 1 }},
		{"sekisho_gateway_tenant_served", []string{`tenant="acme"`}, func(v float64) bool { return v == 1 }},
		{"sekisho_gateway_snapshot_version", []string{`tenant="acme"`}, func(v float64) bool { return v > 0 }},
		{"sekisho_certificate_expiry_seconds", []string{`kind="serving"`}, func(v float64) bool { return v > 3600 }},
		{"sekisho_certificate_expiry_seconds", []string{`kind="agent_ca"`, `tenant="acme"`}, func(v float64) bool { return v > 3600 }},
	}
	for _, g := range gauges {
		if v := sum(after, g.name, g.labels...); !g.want(v) {
			t.Errorf("%s%v = %v", g.name, g.labels, v)
		}
	}
	if v := sum(cafter, "sekisho_connector_sessions"); v != 2 {
		t.Errorf("sekisho_connector_sessions = %v, want 2", v)
	}
	for k := range after {
		if strings.Contains(k, "pc-1") {
			t.Errorf("a device id leaked into a metric label: %s", k)
		}
	}
}

// getStatus fetches a role's /api/status.
func getStatus(t testing.TB, base string) admin.Status {
	t.Helper()
	resp, err := http.Get(base + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func ready(t testing.TB, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadinessFollowsConnectors: the gateway is ready once a tenant has a
// snapshot and stays ready when that tenant's connector leaves (its agents
// get 503, other tenants are served); the per-tenant state follows; a
// connector is ready while it has a session.
func TestReadinessFollowsConnectors(t *testing.T) {
	a, b := newTenant(t, "tenant-a"), newTenant(t, "tenant-b")
	w := startGateway(t, nil, a, b)
	gw := adminURL(w.gw.AdminAddr())
	if code := ready(t, gw); code != 503 {
		t.Fatalf("gateway /readyz before any snapshot = %d, want 503", code)
	}
	core := startCore(t, echoHeaders)
	svc := []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}
	ca := w.startConnector(t, a, svc, nil)
	w.waitServed(t, "tenant-a", 2)
	waitFor(t, "gateway ready", func() bool { return ready(t, gw) == 200 })
	cm := fmt.Sprint("http://", ca.c.AdminAddr())
	waitFor(t, "connector ready", func() bool { return ready(t, cm) == 200 })

	st := getStatus(t, gw)
	byName := map[string]admin.Tenant{}
	for _, ts := range st.Tenants {
		byName[ts.Name] = ts
	}
	if ta := byName["tenant-a"]; !ta.Served || ta.Sessions != 2 || len(ta.Connectors) != 1 || ta.Connectors[0].ID != "conn-tenant-a" {
		t.Fatalf("tenant-a state = %+v", ta)
	}
	if tb := byName["tenant-b"]; tb.Served || tb.Sessions != 0 {
		t.Fatalf("tenant-b state = %+v", tb)
	}

	ca.stop()
	waitFor(t, "tenant-a to have no session", func() bool {
		for _, ts := range getStatus(t, gw).Tenants {
			if ts.Name == "tenant-a" {
				return ts.Sessions == 0 && ts.Served
			}
		}
		return false
	})
	if code := ready(t, gw); code != 200 {
		t.Fatalf("gateway /readyz after tenant-a's connector left = %d, want 200 (its snapshot is kept)", code)
	}
	w.startConnector(t, b, svc, nil)
	w.waitServed(t, "tenant-b", 2)
	if code := ready(t, gw); code != 200 {
		t.Fatalf("gateway /readyz = %d", code)
	}
}

// TestReloadUnderTraffic adds a tenant and rotates a connector pin while
// agents keep working: no request fails. A broken config is refused and
// changes nothing.
func TestReloadUnderTraffic(t *testing.T) {
	acme := newTenant(t, "acme")
	w := startGateway(t, nil, acme)
	core := startCore(t, echoHeaders)
	svc := []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}
	old := w.startConnector(t, acme, svc, nil)
	w.waitServed(t, "acme", 2)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		cert := certstest.Agent(t, acme.ca, fmt.Sprintf("pc-%d", i))
		c := w.agent(&cert, i%2 == 0)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(w.url("/api/policy"))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	base := gateway.Config{Listener: nil}
	tenantsWith := func(extra ...gateway.TenantConfig) gateway.Config {
		c := base
		c.Certificate = &w.srv.Cert
		c.Tenants = append([]gateway.TenantConfig{}, extra...)
		return c
	}
	newCert, newPin := certstest.Connector(t)
	beta := newTenant(t, "beta")
	steps := []struct {
		name string
		cfg  gateway.Config
	}{
		{"add tenant beta", tenantsWith(
			gateway.TenantConfig{Name: "acme", ConnectorPins: []auth.Pin{acme.pin}},
			gateway.TenantConfig{Name: "beta", ConnectorPins: []auth.Pin{beta.pin}})},
		{"list the new acme pin too", tenantsWith(
			gateway.TenantConfig{Name: "acme", ConnectorPins: []auth.Pin{acme.pin, newPin}},
			gateway.TenantConfig{Name: "beta", ConnectorPins: []auth.Pin{beta.pin}})},
	}
	for _, s := range steps {
		if _, err := w.gw.Reload(s.cfg); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		time.Sleep(100 * time.Millisecond) // let traffic run on the new config
	}
	w.startConnector(t, beta, svc, nil)
	w.waitServed(t, "beta", 2)
	rotated := *acme
	rotated.connKey, rotated.pin = newCert, newPin
	w.startConnector(t, &rotated, svc, func(c *connector.Config) { c.ID = "conn-acme-new" })
	w.waitServed(t, "acme", 4)

	// Drop the old pin: the old connector's sessions close, the new serve.
	res, err := w.gw.Reload(tenantsWith(
		gateway.TenantConfig{Name: "acme", ConnectorPins: []auth.Pin{newPin}},
		gateway.TenantConfig{Name: "beta", ConnectorPins: []auth.Pin{beta.pin}}))
	if err != nil {
		t.Fatal(err)
	}
	if res.SessionsClosed != 2 {
		t.Errorf("sessions closed by the rotation = %d, want the old connector's 2", res.SessionsClosed)
	}
	old.stop() // it would redial and be refused forever
	time.Sleep(200 * time.Millisecond)

	// A broken config is refused whole.
	before := w.gw.Tenants()
	bad := tenantsWith(gateway.TenantConfig{Name: "Bad Name"})
	if _, err := w.gw.Reload(bad); err == nil {
		t.Fatal("a config with an invalid tenant was accepted")
	}
	after := w.gw.Tenants()
	if len(after) != len(before) || after[0].Name != before[0].Name || after[1].Name != before[1].Name {
		t.Fatalf("refused reload changed the tenants: %v -> %v", before, after)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads, first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() < 50 {
		t.Fatalf("only %d requests ran during the reloads", ok.Load())
	}
	for _, ts := range after {
		if ts.Name == "acme" && (len(ts.Connectors) != 1 || ts.Connectors[0].ID != "conn-acme-new") {
			t.Errorf("acme's connectors after rotation: %+v", ts.Connectors)
		}
	}
	t.Logf("%d requests during reloads, none failed", ok.Load())
}
