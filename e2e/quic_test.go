package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// quicWorld is a gateway with its UDP side on: agents' HTTP/3 and the QUIC
// tunnel port.
func quicWorld(t *testing.T, ts *tenantSpec) (*world, *net.UDPConn, *net.UDPConn) {
	t.Helper()
	agents := listenUDP(t)
	tunnels := listenUDP(t)
	w := startGateway(t, func(c *gateway.Config) {
		c.QUIC.Conn, c.QUIC.TunnelConn = agents, tunnels
	}, ts)
	return w, agents, tunnels
}

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// h3Client is an agent speaking HTTP/3 to the gateway.
func h3Client(t *testing.T, w *world, cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http3.Transport{TLSClientConfig: conf}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: hangGuard}
}

func TestHTTP3Agents(t *testing.T) {
	acme := newTenant(t, "acme")
	w, agents, _ := quicWorld(t, acme)
	core := startCore(t, echoHeaders)
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 2)
	h3url := "https://" + agents.LocalAddr().String() + "/api/policy"

	cert := certstest.Agent(t, acme.ca, "pc-h3")
	resp, err := h3Client(t, w, &cert).Get(h3url)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.ProtoMajor != 3 || got["Sekisho-Device-Id"] != "pc-h3" || got["Sekisho-Tenant"] != "acme" {
		t.Fatalf("over %s the core saw %v", resp.Proto, got)
	}
	if ts := w.gw.Tenants()[0]; ts.Agents["quic"] != 1 {
		t.Errorf("live agents by transport %v, want one over quic", ts.Agents)
	}

	foreign := certstest.Agent(t, certstest.CA(t, "acme"), "pc-evil")
	for name, c := range map[string]*tls.Certificate{"no certificate": nil, "another CA": &foreign} {
		if _, err := h3Client(t, w, c).Get(h3url); err == nil {
			t.Errorf("%s: HTTP/3 request succeeded", name)
		}
	}
	waitFor(t, "the QUIC refusals logged", func() bool { return w.reasons("no_certificate") > 0 && w.reasons("untrusted") > 0 })

	// The TCP port tells agents where HTTP/3 is.
	resp, err = w.agent(&cert, true).Get(w.url("/api/policy"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `h3=":` + strings.Split(agents.LocalAddr().String(), ":")[1] + `"`
	if alt := resp.Header.Get("Alt-Svc"); !strings.HasPrefix(alt, want) {
		t.Fatalf("Alt-Svc %q, want %s...", alt, want)
	}
}

// TestConnectorOverQUIC: the tunnel runs on QUIC streams end to end.
func TestConnectorOverQUIC(t *testing.T) {
	acme := newTenant(t, "acme")
	w, _, tunnels := quicWorld(t, acme)
	core := startCore(t, bigPayload(32<<20))
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Transport = connector.TransportQUIC
			c.Gateways[0].QUICAddress = tunnels.LocalAddr().String()
		})
	w.waitServed(t, "acme", 2)
	if ts := w.gw.Tenants()[0]; len(ts.Connectors) != 1 || ts.Connectors[0].Transport != "quic" {
		t.Fatalf("connectors %+v, want one over quic", ts.Connectors)
	}
	cert := certstest.Agent(t, acme.ca, "pc-1")
	resp, err := w.agent(&cert, true).Get(w.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 32<<20 {
		t.Fatalf("download over the QUIC tunnel: %d bytes, %v", n, err)
	}
}

// TestAutoTransportFallsBackAndReturns: with UDP blocked toward the QUIC
// tunnel port, an auto connector ends up on TLS+yamux; once UDP flows
// again it moves back to QUIC, without a gap in service.
func TestAutoTransportFallsBackAndReturns(t *testing.T) {
	acme := newTenant(t, "acme")
	w, _, tunnels := quicWorld(t, acme)
	px := startUDPProxy(t, tunnels.LocalAddr().String())
	px.blocked.Store(true)
	core := startCore(t, echoHeaders)
	start := time.Now()
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Transport = connector.TransportAuto
			c.Gateways[0].QUICAddress = px.addr()
			c.QUICTimeout, c.QUICRetry = 300*time.Millisecond, 400*time.Millisecond
		})
	transports := func() map[string]int {
		out := map[string]int{}
		for _, c := range w.gw.Tenants()[0].Connectors {
			out[c.Transport] += c.Sessions
		}
		return out
	}
	waitFor(t, "both sessions on tcp", func() bool { return transports()["tcp"] == 2 })
	fellBack := time.Since(start)
	cert := certstest.Agent(t, acme.ca, "pc-1")
	client := w.agent(&cert, true)
	if code, _ := status(t, client, w.url("/x")); code != 200 {
		t.Fatalf("status %d on the TCP fallback", code)
	}

	px.blocked.Store(false)
	unblocked := time.Now()
	waitFor(t, "both sessions back on quic", func() bool {
		if code, _ := status(t, client, w.url("/x")); code != 200 {
			t.Fatalf("status %d while moving back to QUIC", code)
		}
		tr := transports()
		return tr["quic"] == 2 && tr["tcp"] == 0
	})
	t.Logf("figure: fell back to TCP %v after start (UDP blocked), back on QUIC %v after UDP returned (quic_retry 400ms)",
		fellBack.Round(time.Millisecond), time.Since(unblocked).Round(time.Millisecond))
}

// A draining gateway closes idle HTTP/3 connections itself, as net/http
// does idle TCP ones, instead of waiting for each agent to act on GOAWAY
// (a GOAWAY lost in a burst, an agent that ignores it); it lets a download
// in flight on another connection finish, and refuses new connections at
// once. Shutdown returns when the download is done, not at its deadline.
func TestShutdownClosesIdleHTTP3(t *testing.T) {
	const size = 8 << 20
	acme := newTenant(t, "acme")
	w, agents, _ := quicWorld(t, acme)
	gate := make(chan struct{})
	core := startCore(t, halfThenWait(size, gate))
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 2)
	addr := agents.LocalAddr().String()
	dial := func(device string) (*quic.Conn, error) {
		cert := certstest.Agent(t, acme.ca, device)
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		return quic.DialAddr(ctx, addr, &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS13,
			NextProtos: []string{http3.NextProtoH3}, Certificates: []tls.Certificate{cert}}, nil)
	}

	// An agent that completed its handshake and says nothing more: it
	// never reads the GOAWAY.
	idle, err := dial("pc-idle")
	if err != nil {
		t.Fatal(err)
	}
	defer idle.CloseWithError(0, "")
	busyCert := certstest.Agent(t, acme.ca, "pc-busy")
	resp, err := h3Client(t, w, &busyCert).Get("https://" + addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := sha256.New()
	if _, err := io.CopyN(got, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both agents tracked", func() bool { return w.gw.Tenants()[0].Agents["quic"] == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- w.gw.Shutdown(ctx) }()
	waitFor(t, "the idle agent's connection closed by the gateway", func() bool { return idle.Context().Err() != nil })
	if n := w.gw.Tenants()[0].Agents["quic"]; n != 1 {
		t.Errorf("%d agents over QUIC during the drain, want the busy one", n)
	}
	_, err = dial("pc-late")
	if te, ok := errors.AsType[*quic.TransportError](err); !ok || te.ErrorCode != quic.ConnectionRefused {
		t.Errorf("a new connection during the drain: %v, want CONNECTION_REFUSED", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a download in flight: %v", err)
	default:
	}
	close(gate)
	finishPattern(t, got, resp.Body, 1<<20, size)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// mutedConn is a UDP socket that can stop sending: a gateway process
// that died, or whose CONNECTION_CLOSE was lost.
// It hides the *net.UDPConn, so that quic-go sends through WriteTo.
type mutedConn struct {
	net.PacketConn
	mute atomic.Bool
}

func (c *mutedConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.mute.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// With a stateless reset key kept across restarts, an HTTP/3 agent whose
// gateway vanished without a word learns it from the next gateway process
// on its next request, instead of waiting for its idle timeout.
func TestStatelessResetAfterRestart(t *testing.T) {
	acme := newTenant(t, "acme")
	keyFile := filepath.Join(t.TempDir(), "reset.key")
	first := &mutedConn{PacketConn: listenUDP(t)}
	addr := first.LocalAddr().(*net.UDPAddr)
	w := startGateway(t, func(c *gateway.Config) {
		c.QUIC.Conn, c.QUIC.StatelessResetKeyFile = first, keyFile
	}, acme)
	core := startCore(t, echoHeaders)
	connector := w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 2)
	cert := certstest.Agent(t, acme.ca, "pc-1")
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr.String(), &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		NextProtos: []string{http3.NextProtoH3}, Certificates: []tls.Certificate{cert}}, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")

	waitFor(t, "the agent tracked", func() bool { return w.gw.Tenants()[0].Agents["quic"] == 1 })

	first.mute.Store(true) // the process dies: nothing more leaves it
	connector.stop()
	w.gw.Close()
	second, err := net.ListenUDP("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	startGateway(t, func(c *gateway.Config) {
		c.QUIC.Conn, c.QUIC.StatelessResetKeyFile = second, keyFile
	}, acme)
	str, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// Like a request: quic-go answers no packet of 42 bytes or less (a
	// bare PING, an ACK) with a reset, which could start a reset loop.
	str.Write(bytes.Repeat([]byte("GET /api/policy "), 16))
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("the agent's connection outlived its gateway: no stateless reset")
	}
	if _, ok := errors.AsType[*quic.StatelessResetError](context.Cause(conn.Context())); !ok {
		t.Fatalf("the connection ended with %v, want a stateless reset", context.Cause(conn.Context()))
	}
}
