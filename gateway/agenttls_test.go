package gateway

import (
	"crypto/tls"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
)

func TestAgentTLSPolicy(t *testing.T) {
	acme, beta := newKit(t, "acme"), newKit(t, "beta") // beta never gets a snapshot
	g := startGateway(t, nil, acme, beta)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1))
	var log streamLog
	fc.serve(t, cannedHTTP(&log, replyOK, false))

	now := time.Now()
	ghost := certstest.CA(t, "ghost")
	// beta's CA key signing a certificate that names acme.
	crossTenant := &certs.CA{Tenant: "acme", Cert: beta.ca.Cert, Key: beta.ca.Key}
	tests := []struct {
		name   string
		cert   *tls.Certificate
		reason string // "" for a certificate that must be served
	}{
		{"valid", new(certstest.Agent(t, acme.ca, "pc-1")), ""},
		{"no certificate", nil, "no_certificate"},
		{"expired", new(certstest.AgentAt(t, acme.ca, "pc-old", now.Add(-30*24*time.Hour), 24*time.Hour)), "expired"},
		{"not yet valid", new(certstest.AgentAt(t, acme.ca, "pc-future", now.Add(30*24*time.Hour), 24*time.Hour)), "expired"},
		{"another CA of the tenant", new(certstest.Agent(t, certstest.CA(t, "acme"), "pc-1")), "untrusted"},
		{"another tenant's CA", new(certstest.Agent(t, crossTenant, "pc-1")), "untrusted"},
		{"unknown tenant", new(certstest.Agent(t, ghost, "pc-1")), "unknown_tenant"},
		{"tenant without snapshot", new(certstest.Agent(t, beta.ca, "pc-1")), "unknown_tenant"},
		{"no device name", &acme.conn, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, _, status, err := g.rawAgent(g.agentTLS(tt.cert), "/api/x")
			if tt.reason == "" {
				if err != nil || status != http.StatusOK {
					t.Fatalf("valid agent: status %d, %v", status, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("agent served (status %d), want refusal %q", status, tt.reason)
			}
			if got := g.refusal(t, local); got != tt.reason {
				t.Errorf("refusal reason = %q, want %q (client saw %v)", got, tt.reason, err)
			}
		})
	}
	if _, reqs, _ := log.snapshot(); len(reqs) != 1 {
		t.Errorf("service saw %d requests, want only the valid agent's", len(reqs))
	}
}

// TestAgentTLSResumedSessionReverified checks that a resumed TLS session is
// authorised again: VerifyConnection, not VerifyPeerCertificate.
func TestAgentTLSResumedSessionReverified(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, nil, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1))
	var log streamLog
	fc.serve(t, cannedHTTP(&log, replyOK, false))

	conf := g.agentTLS(new(certstest.Agent(t, acme.ca, "pc-1")))
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	// The client's VerifyConnection runs on resumed handshakes too and
	// tells whether the server agreed to resume, even when the server
	// then refuses the connection.
	var lastResumed atomic.Bool
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		lastResumed.Store(cs.DidResume)
		return nil
	}

	_, resumed, status, err := g.rawAgent(conf, "/api/1")
	if err != nil || status != http.StatusOK {
		t.Fatalf("first request: %d, %v", status, err)
	}
	if resumed {
		t.Fatal("first handshake resumed")
	}
	_, resumed, status, err = g.rawAgent(conf, "/api/2")
	if err != nil || status != http.StatusOK {
		t.Fatalf("second request: %d, %v", status, err)
	}
	if !resumed {
		t.Fatal("second handshake did not resume: the test would prove nothing")
	}

	// The connector's new snapshot drops the agent's CA from the bundle.
	newCA := certstest.CA(t, "acme")
	snap := acme.snapshot("e1", 2)
	snap.TrustBundle = [][]byte{newCA.Cert.Raw}
	if ack := fc.push(t, snap); !ack.Accepted {
		t.Fatalf("snapshot without the old CA refused: %+v", ack)
	}

	local, _, status, err := g.rawAgent(conf, "/api/3")
	if err == nil {
		t.Fatalf("agent of a dropped CA served on a resumed session (status %d)", status)
	}
	if !lastResumed.Load() {
		t.Fatalf("the refused handshake was not a resumption (%v): the test would prove nothing", err)
	}
	if got := g.refusal(t, local); got != "untrusted" {
		t.Errorf("refusal reason = %q, want untrusted", got)
	}
	if _, reqs, _ := log.snapshot(); len(reqs) != 2 {
		t.Errorf("service saw %d requests, want 2", len(reqs))
	}
}

// TestAgentLiveConnectionAfterCADropped: once a snapshot drops an agent's
// CA from the bundle, that agent is not served any more, on a connection
// it already holds either (DESIGN: pushed state replaces the old at once;
// revocations close live sessions within a second).
func TestAgentLiveConnectionAfterCADropped(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, nil, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1))
	var log streamLog
	fc.serve(t, cannedHTTP(&log, replyOK, true))
	agent := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-1")))
	if status, _, body := get(t, agent, g.url("/a"), ""); status != http.StatusOK {
		t.Fatalf("before: %d %q", status, body)
	}
	snap := acme.snapshot("e1", 2)
	snap.TrustBundle = [][]byte{certstest.CA(t, "acme").Cert.Raw}
	if ack := fc.push(t, snap); !ack.Accepted {
		t.Fatalf("snapshot refused: %+v", ack)
	}
	resp, err := agent.Get(g.url("/b"))
	if err != nil {
		return // connection closed or refused: fine
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("agent of a dropped CA served on its open connection: %d", resp.StatusCode)
	}
}
