package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/tunnel"
)

// relayServices are the services the relay tests push.
var relayServices = []tunnel.Service{
	{Name: "api", PathPrefix: "/api"},
	{Name: "web", Host: "web.example", HostRewrite: "web.internal"},
}

func TestRelayAnswers(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, func(c *Config) { c.RetryAfter = 2 * time.Second }, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1, relayServices...))
	var reply atomic.Pointer[tunnel.Reply]
	var log streamLog
	fc.serve(t, cannedHTTP(&log, func(*tunnel.Header) *tunnel.Reply { r := *reply.Load(); return &r }, false))
	agent := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-1")))

	tests := []struct {
		name          string
		reply         tunnel.Reply
		path, host    string
		wantService   string
		wantStatus    int
		wantBody      string
		retryMin, max int // Retry-After bounds in seconds; 0: no header
	}{
		{name: "ok by prefix", reply: tunnel.Reply{Status: tunnel.StatusOK}, path: "/api/policy",
			wantService: "api", wantStatus: 200, wantBody: "hello pc-1 via api"},
		{name: "ok by host", reply: tunnel.Reply{Status: tunnel.StatusOK}, path: "/index.html", host: "Web.Example:443",
			wantService: "web", wantStatus: 200, wantBody: "hello pc-1 via web"},
		{name: "over budget", reply: tunnel.Reply{Status: tunnel.StatusOverBudget, RetryAfter: 7 * time.Second},
			path: "/api/patch", wantService: "api", wantStatus: 503, retryMin: 7, max: 14},
		{name: "over budget without hint", reply: tunnel.Reply{Status: tunnel.StatusOverBudget},
			path: "/api/patch", wantService: "api", wantStatus: 503, retryMin: 1, max: 2},
		{name: "unknown service", reply: tunnel.Reply{Status: tunnel.StatusUnknownService, Message: "unknown service"},
			path: "/api/x", wantService: "api", wantStatus: 502},
		{name: "unavailable", reply: tunnel.Reply{Status: tunnel.StatusUnavailable, Message: "connection refused"},
			path: "/api/x", wantService: "api", wantStatus: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply.Store(&tt.reply)
			before, _, _ := log.snapshot()
			status, retry, body := get(t, agent, g.url(tt.path), tt.host)
			if status != tt.wantStatus {
				t.Fatalf("status = %d (%q), want %d", status, body, tt.wantStatus)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			checkRetryAfter(t, retry, tt.retryMin, tt.max)
			headers, _, errs := log.snapshot()
			if len(errs) > 0 {
				t.Fatalf("fake connector: %v", errs)
			}
			if len(headers) != len(before)+1 {
				t.Fatalf("gateway opened %d streams for one request, want 1", len(headers)-len(before))
			}
			h := headers[len(headers)-1]
			if h.Kind != tunnel.KindHTTP || h.Service != tt.wantService {
				t.Errorf("stream header = kind %v service %q, want http %q", h.Kind, h.Service, tt.wantService)
			}
			if h.DeviceID != "" || h.CertSHA256 != nil || h.ClientAddr != "" {
				t.Errorf("http stream header carries a device identity: %+v", h)
			}
		})
	}

	t.Run("no route", func(t *testing.T) {
		reply.Store(&tunnel.Reply{Status: tunnel.StatusOK})
		before, _, _ := log.snapshot()
		if status, _, _ := get(t, agent, g.url("/nothing/here"), ""); status != http.StatusNotFound {
			t.Errorf("status = %d, want 404", status)
		}
		if status, _, _ := get(t, agent, g.url("/api/../web"), ""); status != http.StatusBadRequest {
			t.Errorf("dot-dot path: status = %d, want 400", status)
		}
		if after, _, _ := log.snapshot(); len(after) != len(before) {
			t.Error("a refused request opened a stream")
		}
	})
}

func TestRelayIdentityHeaders(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, nil, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1, relayServices...))
	var log streamLog
	fc.serve(t, cannedHTTP(&log, replyOK, true))
	cert := certstest.Agent(t, acme.ca, "pc-7")
	agent := g.agent(t, &cert)

	req, err := http.NewRequest(http.MethodGet, g.url("/x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.example"
	req.Header.Set(HeaderDeviceID, "spoofed")
	req.Header.Set("Sekisho-Tenant", "beta")
	req.Header.Set("Sekisho-Anything", "spoofed")
	req.Header.Set("X-Keep", "1")
	req.Header.Set("Connection", "X-Keep")
	resp, err := agent.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	_, reqs, _ := log.snapshot()
	if len(reqs) != 1 {
		t.Fatalf("service saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for name, want := range map[string]string{
		HeaderTenant:     "acme",
		HeaderDeviceID:   "pc-7",
		HeaderCertSHA256: certSHA256Hex(cert),
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want [%q]", name, got, want)
		}
	}
	if got := r.Header.Get("Sekisho-Anything"); got != "" {
		t.Errorf("agent's Sekisho-Anything reached the service: %q", got)
	}
	if got := r.Header.Get(HeaderClientAddr); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("%s = %q", HeaderClientAddr, got)
	}
	if r.Host != "web.internal" {
		t.Errorf("Host toward the service = %q, want the rewrite web.internal", r.Host)
	}
	if r.Header.Get("X-Keep") != "" {
		t.Error("a header named in Connection was forwarded")
	}
}

func TestRelayReusesStreams(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, nil, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1, relayServices...))
	var log streamLog
	fc.serve(t, cannedHTTP(&log, replyOK, true))
	agent := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-1")))
	const n = 5
	for i := range n {
		if status, _, body := get(t, agent, g.url("/api/"+strconv.Itoa(i)), ""); status != 200 {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
	headers, reqs, _ := log.snapshot()
	if len(reqs) != n {
		t.Fatalf("service saw %d requests, want %d", len(reqs), n)
	}
	if len(headers) != 1 {
		t.Errorf("%d sequential requests opened %d streams, want 1 kept alive", n, len(headers))
	}
}

func TestRelayConnectorGone(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, func(c *Config) { c.RetryAfter = 3 * time.Second }, acme)
	fc := g.mustConnect(t, acme, acme.snapshot("e1", 1, relayServices...))
	var log streamLog
	fc.serve(t, cannedHTTP(&log, replyOK, true))
	agent := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-1")))
	if status, _, body := get(t, agent, g.url("/api/x"), ""); status != 200 {
		t.Fatalf("before: %d %q", status, body)
	}

	fc.sess.Close()
	// The pooled stream died with the session; whichever request first
	// sees the session gone must get 503 and a hint, never hang.
	var status int
	var retry string
	waitFor(t, "503 after the connector left", func() bool {
		status, retry, _ = get(t, agent, g.url("/api/x"), "")
		return status == http.StatusServiceUnavailable
	})
	checkRetryAfter(t, retry, 3, 6)
	// The state is kept: agents still pass the handshake and get 503.
	fresh := g.agent(t, new(certstest.Agent(t, acme.ca, "pc-2")))
	if status, retry, _ := get(t, fresh, g.url("/api/x"), ""); status != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("new agent after the connector left: %d Retry-After %q, want 503 with a hint", status, retry)
	}
	if ts := g.tenant(t, "acme"); !ts.Served || ts.Sessions != 0 {
		t.Errorf("tenant = %+v, want served without sessions", ts)
	}
}

// checkRetryAfter checks a Retry-After of min to max seconds (no header
// when max is 0).
func checkRetryAfter(t *testing.T, v string, min, max int) {
	t.Helper()
	if max == 0 {
		if v != "" {
			t.Errorf("Retry-After = %q, want none", v)
		}
		return
	}
	secs, err := strconv.Atoi(v)
	if err != nil || secs < min || secs > max {
		t.Errorf("Retry-After = %q, want %d to %d seconds", v, min, max)
	}
}

func certSHA256Hex(c tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}
