package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// slowDownload serves an endless body at a modest pace, so a download is
// surely in flight when the device is revoked.
var slowDownload = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 16<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		time.Sleep(2 * time.Millisecond)
	}
})

// TestRevokeClosesLiveConnections: `devices revoke` during a download
// closes the device's connection (TCP and QUIC), and new handshakes,
// resumed ones included, are refused. The delay is a figure.
func TestRevokeClosesLiveConnections(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			udp := listenUDP(t)
			acme := newTenant(t, "acme")
			w := startGateway(t, func(c *gateway.Config) {
				c.Limits.EnrollPerSource = 100000
				c.QUIC.Conn = udp
			}, acme)
			core := startCore(t, slowDownload)
			rw := &registryWorld{world: w, acme: acme, clock: &clock{}, store: authtest.Open(t, authtest.SQLiteDSN(t))}
			rw.conn = w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
				func(c *connector.Config) { c.Store, c.SigningCA = rw.store, acme.ca })
			w.waitServed(t, "acme", 2)
			key, csr := newCSR(t, nil)
			_, eb := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": rw.token(t, connector.TokenRequest{}), "csr": csr}, nil)
			cert := tlsCert(t, eb, key)

			// A client with a session cache, so the next handshake tries to
			// resume.
			cache := tls.NewLRUClientSessionCache(8)
			conf := &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost", Certificates: []tls.Certificate{cert},
				ClientSessionCache: cache}
			var client *http.Client
			url := w.url("/download")
			if transport == "quic" {
				tr := &http3.Transport{TLSClientConfig: conf}
				defer tr.Close()
				client, url = &http.Client{Transport: tr}, "https://"+udp.LocalAddr().String()+"/download"
			} else {
				conf.NextProtos = []string{"http/1.1"}
				tr := &http.Transport{TLSClientConfig: conf}
				defer tr.CloseIdleConnections()
				client = &http.Client{Transport: tr}
			}
			resp, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(io.Discard, resp.Body, 256<<10); err != nil {
				t.Fatal(err)
			}
			ended := make(chan time.Time, 1)
			go func() {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ended <- time.Now()
			}()
			revoked := time.Now()
			if _, err := rw.conn.c.Revoke(context.Background(), eb.DeviceID, "lost laptop", "test"); err != nil {
				t.Fatal(err)
			}
			var closedAt time.Time
			select {
			case closedAt = <-ended:
			case <-time.After(hangGuard):
				t.Fatal("the revoked device's download went on")
			}
			t.Logf("figure: %s: connection closed %v after devices revoke", transport, closedAt.Sub(revoked).Round(100*time.Microsecond))
			if n := metricSum(t, w.gw.Registry(), "sekisho_gateway_revocations"); n != 1 {
				t.Errorf("sekisho_gateway_revocations = %v, want 1", n)
			}

			// A new handshake (TCP: with a cached session, so resumption is
			// tried) is refused.
			if transport == "tcp" {
				c, err := tls.Dial("tcp", w.addr, conf)
				if err == nil {
					c.SetDeadline(time.Now().Add(hangGuard))
					_, err = c.Read(make([]byte, 1)) // TLS 1.3: the refusal arrives after the handshake
					c.Close()
				}
				if err == nil {
					t.Fatal("a new handshake of the revoked device was accepted")
				}
				waitFor(t, "the resumed or new handshake refused as revoked", func() bool { return w.reasons("revoked") > 0 })
			} else if _, err := client.Get(url); err == nil {
				t.Fatal("a new QUIC request of the revoked device was served")
			}
		})
	}
}

// TestRevocationAcrossConnectors: two connectors of one tenant share a
// PostgreSQL registry; a revocation made through one reaches the other
// through the registry (LISTEN/NOTIFY), both push it, and the gateway
// refuses the device.
func TestRevocationAcrossConnectors(t *testing.T) {
	dsn := authtest.PostgresDSN(t)
	acme := newTenant(t, "acme")
	second := *acme
	other := newTenant(t, "acme")
	second.connKey, second.pin = other.connKey, other.pin
	gw := startGateway(t, func(c *gateway.Config) {
		c.Limits.EnrollPerSource = 100000
		c.Tenants[0].ConnectorPins = []auth.Pin{acme.pin, second.pin}
	}, acme)
	core := startCore(t, echoHeaders)
	svc := []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}
	storeA, storeB := authtest.Open(t, dsn), authtest.Open(t, dsn)
	a := gw.startConnector(t, acme, svc, func(c *connector.Config) { c.Store, c.SigningCA, c.ID = storeA, acme.ca, "conn-a" })
	b := gw.startConnector(t, &second, svc, func(c *connector.Config) { c.Store, c.SigningCA, c.ID = storeB, acme.ca, "conn-b" })
	gw.waitServed(t, "acme", 4)
	rw := &registryWorld{world: gw, acme: acme, conn: a, store: storeA, clock: &clock{}}
	key, csr := newCSR(t, nil)
	_, eb := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": rw.token(t, connector.TokenRequest{}), "csr": csr}, nil)
	cert := tlsCert(t, eb, key)
	if code, _ := status(t, gw.agent(&cert, false), gw.url("/x")); code != 200 {
		t.Fatalf("enrolled device refused: %d", code)
	}

	if _, err := a.c.Revoke(context.Background(), eb.DeviceID, "revoked through connector A", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connector B to push the revocation it learned from the registry", func() bool {
		for _, r := range b.c.Snapshot().Revocations {
			if r.DeviceID == eb.DeviceID {
				return true
			}
		}
		return false
	})
	if a.c.Snapshot().Epoch != b.c.Snapshot().Epoch {
		t.Fatal("connectors sharing a registry push different epochs")
	}
	_, err := gw.agent(&cert, false).Get(gw.url("/x"))
	if err == nil {
		t.Fatal("the revoked device was served")
	}
	waitFor(t, "the handshake refused as revoked", func() bool { return gw.reasons("revoked") > 0 })
}
