package e2e

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
)

// TestHandshakeRefusals: agents without a valid certificate of a served
// tenant are refused at the handshake, and the log says why.
func TestHandshakeRefusals(t *testing.T) {
	acme := newTenant(t, "acme")
	idle := newTenant(t, "idle") // configured, but no connector ever came
	w := startGateway(t, nil, acme, idle)
	core := startCore(t, echoHeaders)
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 1)
	other := certstest.CA(t, "acme") // a CA that names the same tenant but is not acme's
	expired := certstest.AgentAt(t, acme.ca, "pc-old", time.Now().Add(-30*24*time.Hour), 24*time.Hour)
	foreign := certstest.Agent(t, other, "pc-evil")
	unknown := certstest.Agent(t, certstest.CA(t, "nobody"), "pc-x")
	unserved := certstest.Agent(t, idle.ca, "pc-idle")
	cases := []struct {
		name   string
		cert   *tls.Certificate
		reason string
	}{
		{"no certificate", nil, "no_certificate"},
		{"expired", &expired, "expired"},
		{"another CA", &foreign, "untrusted"},
		{"unknown tenant", &unknown, "unknown_tenant"},
		{"tenant not served yet", &unserved, "unknown_tenant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, logged := core.count(), w.reasons(tc.reason)
			_, err := w.agent(tc.cert, false).Get(w.url("/api/policy"))
			if err == nil {
				t.Fatal("request succeeded")
			}
			if core.count() != before {
				t.Fatal("the core saw the request")
			}
			waitFor(t, "a refusal logged with reason "+tc.reason, func() bool {
				return w.reasons(tc.reason) > logged
			})
		})
	}
}

// TestTenantIsolation: a connector cannot speak for another tenant, and an
// agent of one tenant never reaches another tenant's core.
func TestTenantIsolation(t *testing.T) {
	a, b := newTenant(t, "tenant-a"), newTenant(t, "tenant-b")
	w := startGateway(t, nil, a, b)
	coreA, coreB := startCore(t, echoHeaders), startCore(t, echoHeaders)
	svc := func(c *coreServer) []connector.ServiceConfig {
		return []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: c.addr()}}
	}
	// A's connector key claims to be B's connector.
	w.startConnector(t, a, svc(coreB), func(c *connector.Config) { c.Tenant = "tenant-b"; c.TrustBundle[0] = b.ca.Cert })
	waitFor(t, "the impostor refused", func() bool { return w.logged("connector refused", "not_permitted") })
	for _, ts := range w.gw.Tenants() {
		if ts.Served || ts.Sessions > 0 {
			t.Fatalf("tenant %s served by an impostor: %+v", ts.Name, ts)
		}
	}
	w.startConnector(t, a, svc(coreA), nil)
	w.startConnector(t, b, svc(coreB), nil)
	w.waitServed(t, "tenant-a", 2)
	w.waitServed(t, "tenant-b", 2)

	certA := certstest.Agent(t, a.ca, "pc-a")
	for range 20 {
		got := getJSON(t, w.agent(&certA, true), w.url("/api"), map[string]string{"Sekisho-Tenant": "tenant-b"})
		if got["Sekisho-Tenant"] != "tenant-a" {
			t.Fatalf("agent of A seen as %q", got["Sekisho-Tenant"])
		}
	}
	if coreB.count() != 0 || coreA.count() != 20 {
		t.Fatalf("core A saw %d, core B saw %d requests; want 20 and 0", coreA.count(), coreB.count())
	}
	// A certificate signed by A's CA that names tenant B is checked against
	// B's bundle, and refused.
	forged := &certs.CA{Tenant: "tenant-b", Cert: a.ca.Cert, Key: a.ca.Key}
	cross := certstest.Agent(t, forged, "pc-cross")
	logged := w.reasons("untrusted")
	if _, err := w.agent(&cross, false).Get(w.url("/api")); err == nil {
		t.Fatal("cross-tenant certificate accepted")
	}
	if coreB.count() != 0 {
		t.Fatal("core B reached")
	}
	waitFor(t, "the cross-tenant refusal logged", func() bool { return w.reasons("untrusted") > logged })
}

// reasons counts the gateway's "peer refused" logs with reason.
func (w *world) reasons(reason string) int {
	n := 0
	for _, e := range w.logs.FilterMessage("peer refused").All() {
		if r, ok := e.ContextMap()["reason"].(string); ok && r == reason {
			n++
		}
	}
	return n
}
