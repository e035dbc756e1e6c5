package e2e

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
)

// echoHeaders answers with the request's headers and Host as JSON.
var echoHeaders = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
	h := map[string]string{"Host": r.Host, "Path": r.URL.Path}
	for k := range r.Header {
		h[k] = strings.Join(r.Header.Values(k), ",")
	}
	json.NewEncoder(rw).Encode(h)
})

// served starts a gateway with tenant ts, a core and a connector, and
// waits until the gateway serves the tenant.
func served(t *testing.T, ts *tenantSpec, h http.Handler) (*world, *coreServer) {
	t.Helper()
	w := startGateway(t, nil, ts)
	core := startCore(t, h)
	w.startConnector(t, ts, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, ts.name, 1)
	return w, core
}

func TestRequestCarriesIdentity(t *testing.T) {
	acme := newTenant(t, "acme")
	w, _ := served(t, acme, echoHeaders)
	cert := certstest.Agent(t, acme.ca, "pc-1")
	sum := sha256.Sum256(cert.Certificate[0])
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			got := getJSON(t, w.agent(&cert, h2), w.url("/api/policy"), nil)
			want := map[string]string{
				"Sekisho-Tenant":      "acme",
				"Sekisho-Device-Id":   "pc-1",
				"Sekisho-Cert-Sha256": hex.EncodeToString(sum[:]),
				"X-Forwarded-Proto":   "https",
				"X-Forwarded-For":     "127.0.0.1",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if !strings.HasPrefix(got["Sekisho-Client-Addr"], "127.0.0.1:") {
				t.Errorf("Sekisho-Client-Addr = %q", got["Sekisho-Client-Addr"])
			}
		})
	}
}

func TestForgedIdentityHeadersDropped(t *testing.T) {
	acme := newTenant(t, "acme")
	w, _ := served(t, acme, echoHeaders)
	cert := certstest.Agent(t, acme.ca, "pc-1")
	forged := map[string]string{
		"Sekisho-Device-Id":   "admin-pc",
		"Sekisho-Tenant":      "other",
		"sekisho-cert-sha256": "00",
		"Sekisho-Anything":    "x",
		"X-Forwarded-For":     "10.0.0.1",
		"X-Forwarded-Host":    "evil",
		"Forwarded":           "for=10.0.0.1",
	}
	// Over HTTP/1.1, also try to make the proxy drop the real identity by
	// naming it as hop-by-hop.
	got := rawHTTP1(t, w, &cert, forged, "Connection: keep-alive, Sekisho-Device-Id, Sekisho-Tenant")
	if got["Sekisho-Device-Id"] != "pc-1" || got["Sekisho-Tenant"] != "acme" {
		t.Errorf("identity = %q/%q, want pc-1/acme", got["Sekisho-Device-Id"], got["Sekisho-Tenant"])
	}
	if got["Sekisho-Anything"] != "" || got["Forwarded"] != "" {
		t.Errorf("forged headers reached the core: %v", got)
	}
	if got["X-Forwarded-For"] != "127.0.0.1" || got["X-Forwarded-Host"] == "evil" {
		t.Errorf("X-Forwarded-* = %q %q", got["X-Forwarded-For"], got["X-Forwarded-Host"])
	}
	// The same over HTTP/2 through Go's client.
	got = getJSON(t, w.agent(&cert, true), w.url("/x"), forged)
	if got["Sekisho-Device-Id"] != "pc-1" || got["Sekisho-Anything"] != "" || got["X-Forwarded-For"] != "127.0.0.1" {
		t.Errorf("h2: forged headers survived: %v", got)
	}
}

// rawHTTP1 sends a hand-written HTTP/1.1 request so that nothing on the
// client side tidies its headers, and returns the core's echo.
func rawHTTP1(t *testing.T, w *world, cert *tls.Certificate, hdr map[string]string, extra string) map[string]string {
	t.Helper()
	c, err := tls.Dial("tcp", w.addr, &tls.Config{
		RootCAs: w.srv.Roots, ServerName: "localhost", Certificates: []tls.Certificate{*cert},
		NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	b.WriteString("GET /api/policy HTTP/1.1\r\nHost: localhost\r\n")
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString(extra + "\r\n\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return got
}

func getJSON(t *testing.T, c *http.Client, url string, hdr map[string]string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return got
}

func TestServicesByPrefixAndHost(t *testing.T) {
	acme := newTenant(t, "acme")
	w := startGateway(t, nil, acme)
	api := startCore(t, echoHeaders)
	files := startCore(t, echoHeaders)
	w.startConnector(t, acme, []connector.ServiceConfig{
		{Name: "api", PathPrefix: "/api", Address: api.addr(), HostRewrite: "core.corp.internal"},
		{Name: "files", Host: "files.example", Address: files.addr()},
	}, nil)
	w.waitServed(t, "acme", 1)
	cert := certstest.Agent(t, acme.ca, "pc-1")
	client := w.agent(&cert, false)

	cases := []struct {
		name, host, path string
		core             *coreServer
		wantHost         string
	}{
		{"prefix routes and rewrites host", "localhost", "/api/policy", api, "core.corp.internal"},
		{"prefix matches the segment itself", "localhost", "/api", api, "core.corp.internal"},
		{"host routes and keeps host", "files.example", "/api/x", files, "files.example"},
		{"host match ignores port and case", "FILES.example:443", "/dl/a.bin", files, "FILES.example:443"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.core.count()
			req, _ := http.NewRequest("GET", w.url(tc.path), nil)
			req.Host = tc.host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode != 200 || tc.core.count() != before+1 {
				t.Fatalf("status %d, right core hit: %v", resp.StatusCode, tc.core.count() == before+1)
			}
			if got["Host"] != tc.wantHost || got["Path"] != strings.Split(tc.path, "?")[0] {
				t.Errorf("core saw Host %q path %q, want %q %q", got["Host"], got["Path"], tc.wantHost, tc.path)
			}
		})
	}
	for _, path := range []string{"/apix", "/other"} {
		resp, err := client.Get(w.url(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
	}
}
