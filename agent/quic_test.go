package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/config"
)

func TestConfigTransport(t *testing.T) {
	g := newFakeGateway(t)
	cert := g.provision(t, t.TempDir(), time.Now(), time.Hour).TLSCertificate()
	for _, tc := range []struct {
		transport string
		ok        bool
	}{{"", true}, {"tcp", true}, {"quic", true}, {"auto", true}, {"udp", false}, {"QUIC", false}} {
		cfg := Config{Gateways: []GatewayConfig{{Address: "gw.example:443"}}, Transport: tc.transport}
		err := cfg.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("transport %q: Validate = %v", tc.transport, err)
		}
		if !tc.ok && !slices.Contains(config.FieldPaths(err), "transport") {
			t.Errorf("transport %q: Validate = %v, want a problem at transport", tc.transport, err)
		}
		if _, err := NewClient(cfg, cert); tc.ok != (err == nil) {
			t.Errorf("transport %q: NewClient = %v", tc.transport, err)
		}
	}
}

// quicAgent returns an agent of g whose requests go over transport.
func (g *fakeGateway) quicAgent(t *testing.T, transport string, adjust func(*Config)) *Agent {
	return g.newAgent(t, func(c *Config) {
		c.Transport = transport
		if adjust != nil {
			adjust(c)
		}
	})
}

func get(t *testing.T, c *Client, url string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestHTTP3Request: with transport quic, a request goes to the gateway
// over HTTP/3 with the device certificate, whatever the URL's host.
func TestHTTP3Request(t *testing.T) {
	g := newFakeGateway(t)
	g.startH3(t, udpOn(t, g.addr), nil)
	a := g.quicAgent(t, TransportQUIC, nil)
	resp := get(t, a.Client(), "https://core.example/api/policy?x=1")
	if resp.ProtoMajor != 3 || resp.StatusCode != http.StatusOK {
		t.Fatalf("response %s %d, want HTTP/3 200", resp.Proto, resp.StatusCode)
	}
	reqs := g.seenRequests()
	if len(reqs) != 1 {
		t.Fatalf("gateway saw %d requests", len(reqs))
	}
	r := reqs[0]
	if r.proto != "HTTP/3.0" || r.host != "core.example" || r.uri != "/api/policy?x=1" || r.serial.Cmp(a.Identity().Leaf().SerialNumber) != 0 {
		t.Fatalf("gateway saw %s %s%s from serial %v", r.proto, r.host, r.uri, r.serial)
	}
	a.Client().CloseIdleConnections()
}

// TestHTTP3Failover: a gateway that does not answer over UDP is passed
// over, and the one that answered is tried first from then on.
func TestHTTP3Failover(t *testing.T) {
	g := newFakeGateway(t)
	g.startH3(t, udpOn(t, g.addr), nil)
	dead := newSilentUDP(t, udpOn(t, "127.0.0.1:0"))
	a := g.quicAgent(t, TransportQUIC, func(c *Config) {
		c.Gateways = append([]GatewayConfig{{Address: dead.pc.LocalAddr().String(), RootCAs: g.server.Roots}}, c.Gateways...)
		c.DialTimeout = 300 * time.Millisecond
	})
	if resp := get(t, a.Client(), "https://core.example/a"); resp.ProtoMajor != 3 {
		t.Fatalf("first response over %s", resp.Proto)
	}
	if a.Client().Gateway() != g.addr {
		t.Fatalf("current gateway %s, want %s", a.Client().Gateway(), g.addr)
	}
	before := dead.packets.Load()
	if before == 0 {
		t.Fatal("the dead gateway was not tried first")
	}
	a.Client().CloseIdleConnections() // the next request dials again
	get(t, a.Client(), "https://core.example/b")
	if n := dead.packets.Load(); n != before {
		t.Fatalf("the dead gateway got %d more packets: not sticky", n-before)
	}
	if n := len(g.seenRequests()); n != 2 {
		t.Fatalf("gateway saw %d requests, want 2", n)
	}
	a.Client().CloseIdleConnections()
}

// TestHTTP3CertificateSwap: after SetCertificate, new QUIC connections
// present the new certificate.
func TestHTTP3CertificateSwap(t *testing.T) {
	g := newFakeGateway(t)
	g.startH3(t, udpOn(t, g.addr), nil)
	a := g.quicAgent(t, TransportQUIC, nil)
	old := a.Identity().Leaf().SerialNumber
	get(t, a.Client(), "https://core.example/before")
	renewed := g.provision(t, t.TempDir(), time.Now(), time.Hour)
	a.Client().SetCertificate(renewed.TLSCertificate())
	get(t, a.Client(), "https://core.example/after")
	reqs := g.seenRequests()
	if len(reqs) != 2 || reqs[0].serial.Cmp(old) != 0 || reqs[1].serial.Cmp(renewed.Leaf().SerialNumber) != 0 {
		t.Fatalf("serials seen %v, want %v then %v", serials(reqs), old, renewed.Leaf().SerialNumber)
	}
	a.Client().CloseIdleConnections()
}

func serials(reqs []seenRequest) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.serial.String())
	}
	return out
}

// TestAutoFallsBackAndReturns: with UDP silent, an auto agent sends over
// TCP (a body too: nothing of it went out over QUIC), keeps to TCP for
// autoQUICRetry without trying QUIC, then goes back to HTTP/3 once the
// gateway answers over UDP.
func TestAutoFallsBackAndReturns(t *testing.T) {
	g := newFakeGateway(t)
	udp := udpOn(t, g.addr)
	udpAddr := udp.LocalAddr().String()
	blocked := newSilentUDP(t, udp)
	clock := newFakeClock(time.Now())
	a := g.quicAgent(t, TransportAuto, func(c *Config) {
		c.DialTimeout = 300 * time.Millisecond
		c.Now = clock.Now
	})
	c := a.Client()
	resp, err := c.HTTPClient().Post("https://core.example/upload", "text/plain", strings.NewReader("inventory"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || blocked.packets.Load() == 0 {
		t.Fatalf("first response over %s after %d packets to UDP, want HTTP/2 after trying QUIC", resp.Proto, blocked.packets.Load())
	}
	if reqs := g.seenRequests(); len(reqs) != 1 || reqs[0].body != "inventory" {
		t.Fatalf("gateway saw %+v, want the POST with its body", reqs)
	}

	tried := blocked.packets.Load()
	start := clock.Now()
	clock.set(start.Add(autoQUICRetry - time.Second))
	if resp := get(t, c, "https://core.example/still-tcp"); resp.ProtoMajor != 2 || blocked.packets.Load() != tried {
		t.Fatalf("during the fallback: over %s, %d more packets to UDP", resp.Proto, blocked.packets.Load()-tried)
	}

	blocked.close()
	g.startH3(t, udpOn(t, udpAddr), nil)
	clock.set(start.Add(autoQUICRetry))
	if resp := get(t, c, "https://core.example/back"); resp.ProtoMajor != 3 {
		t.Fatalf("after the fallback: over %s, want HTTP/3", resp.Proto)
	}
	c.CloseIdleConnections()
}

// A request whose context ends while QUIC is tried is not sent again
// over TCP.
func TestAutoCanceledRequestStays(t *testing.T) {
	g := newFakeGateway(t)
	newSilentUDP(t, udpOn(t, g.addr))
	a := g.quicAgent(t, TransportAuto, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://core.example/x", nil)
	if _, err := a.Client().HTTPClient().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want the deadline", err)
	}
	if n := len(g.seenRequests()); n != 0 {
		t.Fatalf("gateway saw %d requests over TCP", n)
	}
	a.Client().CloseIdleConnections()
}
