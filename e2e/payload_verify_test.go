package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/agent"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/payload"
)

// payloadWorld is a gateway and connector with a catalog, and one agent
// whose payload follower holds keys.
type payloadWorld struct {
	w        *world
	cn       *conn
	catFile  string
	client   *http.Client
	follower *agent.PayloadFollower
	connLogs *observer.ObservedLogs
}

func startPayloadWorld(t *testing.T, priv ed25519.PrivateKey, agentKeys []agent.CatalogKey, holdBack int, writeCat func(file string)) *payloadWorld {
	t.Helper()
	pw := &payloadWorld{catFile: filepath.Join(t.TempDir(), "catalog.yaml")}
	writeCat(pw.catFile)
	ten := newTenant(t, "acme")
	pw.w = startGateway(t, nil, ten)
	core := startCore(t, &payloadCore{})
	lc, logs := observer.New(zap.InfoLevel)
	pw.connLogs = logs
	pw.cn = pw.w.startConnector(t, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Logger = zap.New(lc)
			c.Payloads = connector.PayloadsConfig{Catalog: pw.catFile, Keys: []ed25519.PrivateKey{priv}, WatchInterval: 20 * time.Millisecond}
		})
	pw.w.waitServed(t, "acme", 1)
	cert := certstest.Agent(t, ten.ca, "pc-0001")
	base := pw.w.agent(&cert, false)
	pw.follower = agent.NewPayloadFollower(agent.PayloadOptions{Tenant: "acme", Keys: func() []agent.CatalogKey { return agentKeys },
		Gateway: base.Transport, HoldBack: holdBack})
	pw.client = &http.Client{Transport: pw.follower.Transport(base.Transport), Timeout: hangGuard}
	return pw
}

// get fetches path and returns status, the body bytes received and the
// body's read error.
func (pw *payloadWorld) get(t *testing.T, path string) (int, []byte, error) {
	t.Helper()
	resp, err := pw.client.Get(pw.w.url(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func TestPayloadSignatureRefused(t *testing.T) {
	data := patchBytes(64 << 10)
	cd := startCDN(t, data)
	priv, _ := catalogKey(t)
	_, otherKeys := catalogKey(t) // the agent holds another tenant key: the entry's signature cannot verify
	pw := startPayloadWorld(t, priv, otherKeys, 0, func(f string) { writeCatalog(t, f, patchPath, data, cd.url) })
	status, body, _ := pw.get(t, patchPath)
	if status != http.StatusBadGateway || !strings.Contains(string(body), "payload redirect refused") {
		t.Fatalf("got %d %q, want 502 payload redirect refused", status, body)
	}
	if cd.hits.Load() != 0 {
		t.Fatalf("the agent contacted the source %d times for an unverified redirect", cd.hits.Load())
	}
	if s := pw.follower.Stats(); s.SignatureFailures != 1 || s.Verified != 0 {
		t.Fatalf("stats = %+v, want one signature failure", s)
	}
}

func TestPayloadDigestFallback(t *testing.T) {
	data := patchBytes(256 << 10)
	bad := bytes.Clone(data)
	bad[1000] ^= 1
	corrupt, good := startCDN(t, bad), startCDN(t, data)
	priv, keys := catalogKey(t)
	pw := startPayloadWorld(t, priv, keys, 0, func(f string) { writeCatalog(t, f, patchPath, data, corrupt.url, good.url) })
	status, body, err := pw.get(t, patchPath)
	if status != http.StatusOK || err != nil || !bytes.Equal(body, data) {
		t.Fatalf("got %d, %d bytes (equal %v), %v; want the payload from the second source", status, len(body), bytes.Equal(body, data), err)
	}
	if corrupt.hits.Load() != 1 || good.hits.Load() != 1 {
		t.Fatalf("source hits: corrupt %d, good %d; want 1 and 1", corrupt.hits.Load(), good.hits.Load())
	}
	s := pw.follower.Stats()
	if s.Verified != 1 || s.DigestMismatches != 1 {
		t.Fatalf("stats = %+v, want one verified download after one digest mismatch", s)
	}
	// The corrupt source now goes last for this payload.
	if _, body, _ := pw.get(t, patchPath); !bytes.Equal(body, data) || corrupt.hits.Load() != 1 || good.hits.Load() != 2 {
		t.Fatalf("second download: corrupt hits %d, good hits %d", corrupt.hits.Load(), good.hits.Load())
	}
}

// TestPayloadMismatchEverywhere: every source is corrupt. A payload within
// the hold-back gets a clear 502 and no byte; a larger one gets all but
// the held-back bytes and then a broken body, never a complete file.
func TestPayloadMismatchEverywhere(t *testing.T) {
	for _, tt := range []struct {
		name     string
		size     int
		holdBack int
	}{{"within hold-back", 256 << 10, 0}, {"streamed", 2 << 20, 256 << 10}} {
		t.Run(tt.name, func(t *testing.T) {
			data := patchBytes(int64(tt.size))
			bad1, bad2 := bytes.Clone(data), bytes.Clone(data)
			bad1[10] ^= 1
			bad2[tt.size-10] ^= 1
			c1, c2 := startCDN(t, bad1), startCDN(t, bad2)
			priv, keys := catalogKey(t)
			pw := startPayloadWorld(t, priv, keys, tt.holdBack, func(f string) { writeCatalog(t, f, patchPath, data, c1.url, c2.url) })
			resp, err := pw.client.Get(pw.w.url(patchPath))
			if err != nil {
				t.Fatal(err)
			}
			body, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tt.holdBack == 0 {
				if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "digest mismatch") {
					t.Fatalf("got %d %q, want 502 naming the digest mismatch", resp.StatusCode, body)
				}
			} else if resp.StatusCode != http.StatusOK || readErr == nil || len(body) >= tt.size {
				t.Fatalf("got %d, %d of %d bytes, read error %v: want a broken body short of the payload", resp.StatusCode, len(body), tt.size, readErr)
			}
			if s := pw.follower.Stats(); s.Verified != 0 || s.Failed != 1 {
				t.Fatalf("stats = %+v, want one failed download and none verified", s)
			}
		})
	}
}

// TestCatalogUpdate: a catalog change reaches the gateway without a
// restart; a broken update is refused whole, with file, line and field in
// the connector's log, and the catalog in force keeps answering.
func TestCatalogUpdate(t *testing.T) {
	v1, v2 := patchBytes(32<<10), patchBytes(48<<10)
	c1, c2 := startCDN(t, v1), startCDN(t, v2)
	priv, keys := catalogKey(t)
	pw := startPayloadWorld(t, priv, keys, 0, func(f string) { writeCatalog(t, f, patchPath, v1, c1.url) })
	if _, body, _ := pw.get(t, patchPath); !bytes.Equal(body, v1) {
		t.Fatal("first catalog not served")
	}
	writeCatalog(t, pw.catFile, patchPath, v2, c2.url)
	waitFor(t, "the new catalog", func() bool { _, body, _ := pw.get(t, patchPath); return bytes.Equal(body, v2) })

	broken := "payloads:\n  - path: /patches/x.msu\n    sha256: \"1234\"\n    size: 10\n    sources: [ftp://cdn.example/x]\n"
	if err := os.WriteFile(pw.catFile, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal logged", func() bool {
		return pw.connLogs.FilterMessage("payload catalog refused, previous catalog kept").Len() > 0
	})
	msg := pw.connLogs.FilterMessage("payload catalog refused, previous catalog kept").All()[0].ContextMap()["error"]
	for _, want := range []string{pw.catFile + ":3", "payloads[0].sha256", pw.catFile + ":5", "payloads[0].sources[0]"} {
		if !strings.Contains(msgString(msg), want) {
			t.Errorf("refusal %q does not name %q", msgString(msg), want)
		}
	}
	if _, body, _ := pw.get(t, patchPath); !bytes.Equal(body, v2) {
		t.Fatal("the catalog in force was dropped by a broken update")
	}
	sum := sha256.Sum256(v2)
	if s := pw.follower.Stats(); s.Verified < 2 || s.SignatureFailures != 0 {
		t.Fatalf("stats = %+v (v2 digest %x)", s, sum[:4])
	}
}

func msgString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return errString(v)
}

// TestPayloadRelayFallback: the CDN is down, the entry lists relay next:
// the agent asks the gateway to relay, the connector admits it under the
// budget, and the relayed bytes are verified like the CDN's would be.
func TestPayloadRelayFallback(t *testing.T) {
	data := patchBytes(512 << 10)
	down := startCDN(t, nil) // answers with a wrong length
	priv, keys := catalogKey(t)
	ten := newTenant(t, "acme")
	w := startGateway(t, nil, ten)
	core := startCore(t, &payloadCore{data: data})
	catFile := filepath.Join(t.TempDir(), "catalog.yaml")
	writeCatalog(t, catFile, patchPath, data, down.url, payload.Relay)
	cn := w.startConnector(t, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Payloads = connector.PayloadsConfig{Catalog: catFile, Keys: []ed25519.PrivateKey{priv}}
		})
	w.waitServed(t, "acme", 1)
	cert := certstest.Agent(t, ten.ca, "pc-0001")
	base := w.agent(&cert, true)
	f := agent.NewPayloadFollower(agent.PayloadOptions{Tenant: "acme", Keys: func() []agent.CatalogKey { return keys }, Gateway: base.Transport})
	client := &http.Client{Transport: f.Transport(base.Transport), Timeout: hangGuard}
	resp, err := client.Get(w.url(patchPath))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, data) {
		t.Fatalf("got %d, %d bytes, %v; want the relayed payload", resp.StatusCode, len(body), err)
	}
	s := f.Stats()
	if s.Verified != 1 || s.BytesRelayed != int64(len(data)) || s.SourceFailures != 1 {
		t.Fatalf("stats = %+v, want one verified relayed download after one failed source", s)
	}
	if got := metricSum(t, cn.c.Registry(), "sekisho_connector_paced_bytes_total"); got < float64(len(data)) {
		t.Fatalf("connector paced %.0f payload bytes, want at least %d", got, len(data))
	}
}
