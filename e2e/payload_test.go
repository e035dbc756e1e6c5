package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sekisho/sekisho/agent"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

const patchPath = "/patches/KB5031356.msu"

// rollout sizes: 200 agents × 20 MiB, shrunk under the race detector.
func rolloutSize() (agents int, size int64) {
	if raceEnabled {
		return 20, 2 << 20
	}
	return 200, 20 << 20
}

// patchBytes is a deterministic payload of n bytes.
func patchBytes(n int64) []byte {
	b := make([]byte, n)
	mrand.NewChaCha8([32]byte{42}).Read(b)
	return b
}

// cdn is a toy vendor CDN on loopback.
type cdn struct {
	url    string
	served atomic.Int64 // body bytes written
	hits   atomic.Int64
}

func startCDN(t testing.TB, data []byte) *cdn {
	t.Helper()
	c := &cdn{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: hangGuard, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		n, _ := io.Copy(w, bytes.NewReader(data))
		c.served.Add(n)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c.url = "http://" + ln.Addr().String() + patchPath
	return c
}

// catalogKey makes a catalog signing key and the agents' view of it.
func catalogKey(t testing.TB) (ed25519.PrivateKey, []agent.CatalogKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, []agent.CatalogKey{{ID: payload.KeyID(pub), PublicKey: pub}}
}

// writeCatalog writes a catalog file with one entry for data at path.
func writeCatalog(t testing.TB, file, path string, data []byte, sources ...string) {
	t.Helper()
	sum := sha256.Sum256(data)
	var b bytes.Buffer
	fmt.Fprintf(&b, "payloads:\n  - path: %s\n    sha256: %s\n    size: %d\n    sources:\n", path, hex.EncodeToString(sum[:]), len(data))
	for _, s := range sources {
		fmt.Fprintf(&b, "      - %s\n", s)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// payloadCore serves small management answers and, for the relay arm,
// the payload itself, counting the payload bytes it wrote.
type payloadCore struct {
	data    []byte
	written atomic.Int64
}

func (c *payloadCore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != patchPath {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"policy":"default","interval_s":300}`)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(c.data)))
	n, _ := io.Copy(w, bytes.NewReader(c.data))
	c.written.Add(n)
}

// metricSum adds up every series of a metric family.
func metricSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestRolloutRedirected: a patch day with a catalog. Every agent's
// request is answered with a signed redirect to the toy CDN, the agent's
// payload follower downloads and verifies it, and the tunnel carries only
// the redirects: under 1% of the payload bytes.
func TestRolloutRedirected(t *testing.T) {
	agents, size := rolloutSize()
	data := patchBytes(size)
	want := sha256.Sum256(data)
	priv, keys := catalogKey(t)
	cd := startCDN(t, data)
	ten := newTenant(t, "acme")
	w := startGateway(t, nil, ten)
	core := startCore(t, &payloadCore{data: data})
	catFile := filepath.Join(t.TempDir(), "catalog.yaml")
	writeCatalog(t, catFile, patchPath, data, cd.url, payload.Relay)
	cn := w.startConnector(t, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Payloads = connector.PayloadsConfig{Catalog: catFile, Keys: []ed25519.PrivateKey{priv}}
		})
	w.waitServed(t, "acme", 1)

	start := time.Now()
	followers := make([]*agent.PayloadFollower, agents)
	errs := make([]error, agents)
	var wg sync.WaitGroup
	for i := range agents {
		cert := certstest.Agent(t, ten.ca, fmt.Sprintf("pc-%04d", i))
		base := w.agent(&cert, i%2 == 0)
		followers[i] = agent.NewPayloadFollower(agent.PayloadOptions{Tenant: "acme", Keys: func() []agent.CatalogKey { return keys },
			Gateway: base.Transport})
		client := &http.Client{Transport: followers[i].Transport(base.Transport), Timeout: 2 * time.Minute}
		wg.Go(func() {
			if _, err := managementRequest(client, w.url("/api/policy")); err != nil {
				errs[i] = err
				return
			}
			errs[i] = fetchVerified(client, w.url(patchPath), want)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var verified int64
	for _, f := range followers {
		verified += f.Stats().Verified
	}
	payloadBytes := float64(agents) * float64(size)
	tunnel := metricSum(t, cn.c.Registry(), "sekisho_connector_relayed_bytes_total")
	redirected := metricSum(t, w.gw.Registry(), "sekisho_gateway_payload_redirected_bytes_total")
	t.Logf("%d agents × %d MiB in %v: %d verified; CDN served %.0f MiB; tunnel carried %.0f bytes (%.4f%% of payload bytes); gateway redirected %.0f MiB",
		agents, size>>20, elapsed.Round(time.Millisecond), verified, float64(cd.served.Load())/(1<<20), tunnel, 100*tunnel/payloadBytes, redirected/(1<<20))
	if verified != int64(agents) {
		t.Fatalf("%d downloads verified, want %d", verified, agents)
	}
	if tunnel >= payloadBytes/100 {
		t.Fatalf("tunnel carried %.0f bytes, not under 1%% of %.0f payload bytes", tunnel, payloadBytes)
	}
	if redirected != payloadBytes {
		t.Fatalf("gateway counted %.0f bytes redirected, want %.0f", redirected, payloadBytes)
	}
}

// managementRequest fetches a small answer and returns its latency.
func managementRequest(c *http.Client, url string) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return 0, fmt.Errorf("management request: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("management request: %s, %v", resp.Status, err)
	}
	return time.Since(start), nil
}

// fetchVerified downloads url and checks its digest.
func fetchVerified(c *http.Client, url string, want [32]byte) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("payload: %s, %v", resp.Status, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		return fmt.Errorf("payload digest %x, want %x", got, want)
	}
	return nil
}

// TestRolloutBudgeted: the same patch day without a catalog, the payload
// path classified as payload and relayed under a bandwidth and concurrency
// budget. Sampled every 50 ms, the payload bytes that left the LAN and
// those the agents received never exceed budget × elapsed + burst +
// concurrent streams × stream window; every agent completes by honouring
// Retry-After; management requests keep succeeding throughout.
func TestRolloutBudgeted(t *testing.T) {
	agents, size := rolloutSize()
	const (
		maxConcurrent = 8
		retryAfter    = time.Second
	)
	rate := int64(200 << 20)
	if raceEnabled {
		rate = 8 << 20
	}
	burst := rate / 10
	data := patchBytes(size)
	want := sha256.Sum256(data)
	ten := newTenant(t, "acme")
	w := startGateway(t, nil, ten)
	core := &payloadCore{data: data}
	cs := startCore(t, core)
	cn := w.startConnector(t, ten, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: cs.addr()}},
		func(c *connector.Config) {
			c.Payloads.Relay = connector.RelayConfig{MaxConcurrent: maxConcurrent, BytesPerSecond: rate, Burst: burst,
				PathPrefixes: []string{"/patches/"}, RetryAfter: retryAfter}
		})
	w.waitServed(t, "acme", 1)
	window := float64(tunnel.Config{}.WithDefaults().StreamWindow)

	var received atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	type sample struct{ at, paced, received float64 }
	var samples []sample
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				samples = append(samples, sample{time.Since(start).Seconds(),
					metricSum(t, cn.c.Registry(), "sekisho_connector_paced_bytes_total"), float64(received.Load())})
			}
		}
	}()
	mgmt := startManagementProbe(t, ctx, w, ten)

	deferrals := make([]int, agents)
	errs := make([]error, agents)
	var wg sync.WaitGroup
	for i := range agents {
		cert := certstest.Agent(t, ten.ca, fmt.Sprintf("pc-%04d", i))
		client := w.agent(&cert, i%2 == 0)
		client.Timeout = 2 * time.Minute
		wg.Go(func() {
			deferrals[i], errs[i] = fetchHonouringRetryAfter(ctx, client, w.url(patchPath), want, &received)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	<-sampled
	mgmtOK, mgmtErrs, mgmtMax := mgmt.stop()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	totalDeferrals := 0
	for _, d := range deferrals {
		totalDeferrals += d
	}
	slack := float64(burst) + maxConcurrent*window
	for _, s := range samples {
		bound := float64(rate)*s.at + slack
		if s.paced > bound || s.received > bound {
			t.Fatalf("at %.2fs: %.0f bytes left the LAN, %.0f received; bound rate × t + burst + %d × window = %.0f",
				s.at, s.paced, s.received, maxConcurrent, bound)
		}
	}
	payloadBytes := float64(agents) * float64(size)
	t.Logf("%d agents × %d MiB relayed in %v under %d MiB/s: %.1f MiB/s achieved (%.0f%% of budget); %d deferrals (503 + Retry-After); management probe: %d ok, %d failed, slowest %v",
		agents, size>>20, elapsed.Round(time.Millisecond), rate>>20, payloadBytes/elapsed.Seconds()/(1<<20),
		100*payloadBytes/elapsed.Seconds()/float64(rate), totalDeferrals, mgmtOK, mgmtErrs, mgmtMax.Round(time.Millisecond))
	if mgmtErrs > 0 || mgmtOK == 0 {
		t.Fatalf("management requests during the rollout: %d ok, %d failed", mgmtOK, mgmtErrs)
	}
	if totalDeferrals == 0 {
		t.Fatal("no agent was deferred: the concurrency budget was never reached")
	}
	if got := core.written.Load(); got < int64(payloadBytes) {
		t.Fatalf("core wrote %d payload bytes, want at least %d", got, int64(payloadBytes))
	}
}

// fetchHonouringRetryAfter downloads url, waiting out each 503's
// Retry-After, and returns how often it was deferred.
func fetchHonouringRetryAfter(ctx context.Context, c *http.Client, url string, want [32]byte, received *atomic.Int64) (int, error) {
	for deferred := 0; ; deferred++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return deferred, err
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			resp.Body.Close()
			secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || secs <= 0 {
				return deferred, fmt.Errorf("503 without a usable Retry-After (%q)", resp.Header.Get("Retry-After"))
			}
			select {
			case <-ctx.Done():
				return deferred, fmt.Errorf("still deferred after %d tries: %w", deferred, ctx.Err())
			case <-time.After(time.Duration(secs) * time.Second):
			}
			continue
		}
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(h, countWriter{received}), resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return deferred, fmt.Errorf("payload: %s, %v", resp.Status, err)
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			return deferred, errors.New("payload digest mismatch")
		}
		return deferred, nil
	}
}

type countWriter struct{ n *atomic.Int64 }

func (c countWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// managementProbe is one agent that fetches its policy every 20 ms.
type managementProbe struct {
	cancel  context.CancelFunc
	done    chan struct{}
	ok, bad int
	slowest time.Duration
}

func startManagementProbe(t testing.TB, ctx context.Context, w *world, ten *tenantSpec) *managementProbe {
	cert := certstest.Agent(t, ten.ca, "probe")
	client := w.agent(&cert, false)
	ctx, cancel := context.WithCancel(ctx)
	p := &managementProbe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			d, err := managementRequest(client, w.url("/api/policy"))
			if err != nil {
				if ctx.Err() == nil {
					p.bad++
				}
			} else {
				p.ok++
				p.slowest = max(p.slowest, d)
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *managementProbe) stop() (ok, bad int, slowest time.Duration) {
	p.cancel()
	<-p.done
	return p.ok, p.bad, p.slowest
}
