package e2e

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/payload"
)

// TestSizeThresholdReclassifies: an uncatalogued download above the size
// threshold, first seen on a pooled management stream, is sent again as a
// payload (under the budget), and its path goes out as payload from then
// on. Small answers stay management requests.
func TestSizeThresholdReclassifies(t *testing.T) {
	big := patchBytes(3 << 20)
	ten := newTenant(t, "acme")
	w := startGateway(t, nil, ten)
	core := startCore(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/files/tool.zip":
			rw.Header().Set("Content-Length", strconv.Itoa(len(big)))
			rw.Write(big)
			return
		case "/files/chunked.zip":
			rw.Write(big) // no Content-Length: chunked
			return
		}
		io.WriteString(rw, "small")
	}))
	cn := w.startConnector(t, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) { c.Payloads.Relay = connector.RelayConfig{SizeThreshold: 1 << 20} })
	w.waitServed(t, "acme", 1)
	cert := certstest.Agent(t, ten.ca, "pc-0001")
	client := w.agent(&cert, false)
	for i := range 2 {
		resp, err := client.Get(w.url("/files/tool.zip"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, big) {
			t.Fatalf("download %d: %d bytes, %v", i, len(body), err)
		}
	}
	if _, err := managementRequest(client, w.url("/api/policy")); err != nil {
		t.Fatal(err)
	}
	// A chunked answer cannot be caught by its length: it is relayed as
	// is, and its size marks the path as payload for the next request.
	for range 2 {
		resp, err := client.Get(w.url("/files/chunked.zip"))
		if err != nil {
			t.Fatal(err)
		}
		if body, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(body, big) {
			t.Fatalf("chunked download: %d bytes, %v", len(body), err)
		}
		resp.Body.Close()
	}
	reg := w.gw.Registry()
	if got := metricSum(t, reg, "sekisho_gateway_payload_reclassified_total"); got != 1 {
		t.Fatalf("%v requests reclassified, want 1 (the second goes out as payload from the start)", got)
	}
	if got := metricSum(t, cn.c.Registry(), "sekisho_connector_payload_streams_total"); got != 3 {
		t.Fatalf("connector admitted %v payload streams, want 3 (two of tool.zip, the second of chunked.zip)", got)
	}
	if got := metricSum(t, reg, "sekisho_gateway_payload_relayed_bytes_total"); got != float64(3*len(big)) {
		t.Fatalf("gateway counted %v payload bytes relayed, want %d", got, 3*len(big))
	}
}

// TestRelayOnlyWhenCatalogued: an agent asking the gateway to relay a
// catalogued payload whose entry lists no relay source is refused: the
// catalog, not the agent, decides what may cross the tunnel.
func TestRelayOnlyWhenCatalogued(t *testing.T) {
	data := patchBytes(1 << 20)
	cd := startCDN(t, data)
	priv, _ := catalogKey(t)
	ten := newTenant(t, "acme")
	w := startGateway(t, nil, ten)
	core := startCore(t, &payloadCore{data: data})
	catFile := filepath.Join(t.TempDir(), "catalog.yaml")
	writeCatalog(t, catFile, patchPath, data, cd.url)
	w.startConnector(t, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Payloads = connector.PayloadsConfig{Catalog: catFile, Keys: []ed25519.PrivateKey{priv}}
		})
	w.waitServed(t, "acme", 1)
	cert := certstest.Agent(t, ten.ca, "pc-0001")
	client := w.agent(&cert, false)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, err := client.Get(w.url(patchPath))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != cd.url ||
		resp.Header.Get(payload.HeaderSignature) == "" {
		t.Fatalf("plain request: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequest(http.MethodGet, w.url(patchPath), nil)
	req.Header.Set(payload.HeaderSource, payload.Relay)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || core.count() != 0 {
		t.Fatalf("relay request: %s, core saw %d requests; want 403 and none", resp.Status, core.count())
	}
}
