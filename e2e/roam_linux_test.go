package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/agent"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
	"github.com/sekisho/sekisho/internal/netwatch/netwatchtest"
)

// The roaming network. Both namespaces are the test's own, so the
// addresses are the same in every run and collide with nothing.
const (
	roamGatewayIP = "10.201.9.1" // the gateway's UDP port, on the far namespace's loopback
	roamPathA     = "10.201.1.2" // the PC on its first network ("home Wi-Fi")
	roamPathB     = "10.201.2.2" // the PC on its second network ("phone hotspot")
	roamSize      = 48 << 20     // the download
	roamChildEnv  = "SEKISHO_ROAM_AGENT"
	roamMoved     = "quic connection moved to a new path"
	roamPacing    = 2 * time.Millisecond // between 256 KiB writes of the core: ~128 MiB/s at most
)

// roamChild is what the agent process is told.
type roamChild struct {
	Gateway string `json:"gateway"`
	CAFile  string `json:"ca_file"`
	CertPEM []byte `json:"cert_pem"`
	KeyPEM  []byte `json:"key_pem"`
}

// roamMove is one "moved" log line of the agent.
type roamMove struct {
	At          time.Time     `json:"at"`
	OldPath     string        `json:"old_path"`
	NewPath     string        `json:"new_path"`
	Trigger     string        `json:"trigger"`
	ProbeTime   time.Duration `json:"probe_time"`
	SinceChange time.Duration `json:"since_change"`
}

// roamResult is what the agent process reports.
type roamResult struct {
	Bytes  int64      `json:"bytes"`
	SHA256 []byte     `json:"sha256"`
	Proto  string     `json:"proto"`
	Gaps   []roamGap  `json:"gaps"` // waits between reads of 2ms or more, the first 256
	Moves  []roamMove `json:"moves"`
}

// roamGap is a wait for the next bytes of the download.
type roamGap struct {
	Ended time.Time     `json:"ended"`
	Took  time.Duration `json:"took"`
}

// stall is the longest wait for bytes that ended after t.
func (r roamResult) stall(t time.Time) time.Duration {
	var d time.Duration
	for _, g := range r.Gaps {
		if g.Ended.After(t) {
			d = max(d, g.Took)
		}
	}
	return d
}

// TestRoamingDownload: a PC (a network namespace with two links) downloads
// over HTTP/3 through the real gateway, connector and core. Mid-transfer
// its network changes as a laptop's does when it leaves home Wi-Fi for a
// phone hotspot: an address on the second link and a route through it
// appear, and the first link loses its address, or goes down. The agent's
// own watcher and roamer move the QUIC connection to the second link; the
// download completes byte-identical, and the gateway accepted one
// connection.
//
// When the address goes, the next send from it fails, which hints the
// roamer at once; when the link goes down, the address stays and sends
// from it still leave (through the other link, where nothing answers
// them), so only the netlink watcher sees the change.
func TestRoamingDownload(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop string // the last line of the change: how path A goes
	}{
		{"address removed", "addr del " + roamPathA + "/24 dev path-a"},
		{"link down", "link set path-a down"},
	} {
		t.Run(tc.name, func(t *testing.T) { testRoamingDownload(t, tc.drop) })
	}
}

func testRoamingDownload(t *testing.T, drop string) {
	pc, far := netwatchtest.New(t), netwatchtest.New(t)
	pc.Veth("path-a", far, "gw-a")
	pc.Veth("path-b", far, "gw-b")
	far.IP("addr", "add", roamGatewayIP+"/32", "dev", "lo")
	far.IP("addr", "add", "10.201.1.1/24", "dev", "gw-a")
	far.IP("addr", "add", "10.201.2.1/24", "dev", "gw-b")
	pc.IP("addr", "add", roamPathA+"/24", "dev", "path-a")
	pc.IP("route", "add", roamGatewayIP, "via", "10.201.1.1", "dev", "path-a", "metric", "100")

	// The gateway runs here, on loopback; only its agents' UDP socket
	// lives in the far namespace.
	var udp *net.UDPConn
	if err := far.Do(func() (err error) {
		udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(roamGatewayIP)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	acme := newTenant(t, "acme")
	w := startGateway(t, func(c *gateway.Config) { c.QUIC.Conn = udp }, acme)
	mid, gate := make(chan struct{}), make(chan struct{})
	handler, want := roamPayload(mid, gate)
	core := startCore(t, handler)
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 1)
	metricsBefore := scrape(t, adminURL(w.gw.AdminAddr()))

	child := startRoamChild(t, pc, w, certstest.Agent(t, acme.ca, "pc-roam"), udp.LocalAddr().String())
	var changed time.Time
	select {
	case <-mid:
		changed = time.Now()
		if err := pc.Batch(
			"addr add "+roamPathB+"/24 dev path-b",
			"route add "+roamGatewayIP+" via 10.201.2.1 dev path-b metric 200",
			drop,
		); err != nil {
			t.Fatal(err)
		}
		close(gate)
	case <-time.After(hangGuard):
		t.Fatalf("the download did not start; agent output:\n%s", child.output())
	}
	res := child.wait(t)

	if res.Bytes != roamSize || !bytes.Equal(res.SHA256, want[:]) || res.Proto != "HTTP/3.0" {
		t.Fatalf("agent got %d bytes over %s, sha256 %x, want %d bytes over HTTP/3.0, sha256 %x", res.Bytes, res.Proto, res.SHA256, roamSize, want)
	}
	if len(res.Moves) != 1 || !strings.HasPrefix(res.Moves[0].OldPath, roamPathA+":") || !strings.HasPrefix(res.Moves[0].NewPath, roamPathB+":") {
		t.Fatalf("agent logged moves %+v, want one from %s to %s", res.Moves, roamPathA, roamPathB)
	}
	after := scrape(t, adminURL(w.gw.AdminAddr()))
	agentHandshakes := func(m map[string]float64) float64 {
		return sum(m, "sekisho_gateway_handshakes_total", `kind="agent"`, `result="ok"`)
	}
	if n := agentHandshakes(after) - agentHandshakes(metricsBefore); n != 1 {
		t.Fatalf("gateway accepted %v agent connections, want 1", n)
	}
	m := res.Moves[0]
	t.Logf("figure: %s: change to switched path %v (trigger %q, noticed %v after the change, probe %v); download stalled %v",
		drop, m.At.Sub(changed).Round(100*time.Microsecond), m.Trigger, (m.At.Sub(changed) - m.SinceChange).Round(100*time.Microsecond),
		m.ProbeTime.Round(10*time.Microsecond), res.stall(changed).Round(100*time.Microsecond))
}

// roamPayload serves /roam/big: roamSize pseudo-random bytes, written in
// paced 256 KiB pieces. It signals mid after a quarter, and holds the
// second half back until gate is closed, so that the network changes
// while the download is in flight. It returns the payload's digest.
func roamPayload(mid chan<- struct{}, gate <-chan struct{}) (http.Handler, [32]byte) {
	data := make([]byte, roamSize)
	rand.NewChaCha8([32]byte{'r', 'o', 'a', 'm'}).Read(data)
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/roam/big" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(roamSize))
		const piece = 256 << 10
		for off := 0; off < roamSize; off += piece {
			switch off {
			case roamSize / 4:
				once.Do(func() { close(mid) })
			case roamSize / 2:
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			if _, err := w.Write(data[off : off+piece]); err != nil {
				return
			}
			time.Sleep(roamPacing)
		}
	}), sha256.Sum256(data)
}

// roamProcess is the agent process, running inside the PC's namespace.
type roamProcess struct {
	results *os.File
	exited  chan struct{}
	err     error // of the process, once exited is closed

	mu  sync.Mutex
	out bytes.Buffer // its stdout and stderr
}

func (p *roamProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *roamProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startRoamChild runs this test binary's TestRoamingAgentProcess inside
// ns, as the PC: all of its sockets, and its netlink watcher, belong to
// the namespace.
func startRoamChild(t *testing.T, ns *netwatchtest.Netns, w *world, cert tls.Certificate, gatewayAddr string) *roamProcess {
	t.Helper()
	dir := t.TempDir()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := roamChild{Gateway: gatewayAddr, CAFile: filepath.Join(dir, "gateway-ca.pem"),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})}
	for _, der := range cert.Certificate {
		cfg.CertPEM = append(cfg.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.CA.Cert.Raw})
	cfgPath := filepath.Join(dir, "child.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfg.CAFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*hangGuard)
	cmd := ns.Command(ctx, exe, "-test.run=^TestRoamingAgentProcess$", "-test.v", "-test.count=1")
	p := &roamProcess{results: r, exited: make(chan struct{})}
	cmd.Env = append(os.Environ(), roamChildEnv+"="+cfgPath)
	cmd.Stdout, cmd.Stderr = p, p
	cmd.ExtraFiles = []*os.File{wr} // fd 3
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	wr.Close()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel() // kills it if still running
		<-p.exited
		r.Close()
	})
	return p
}

// wait waits for the agent process to end and returns its report.
func (p *roamProcess) wait(t *testing.T) roamResult {
	t.Helper()
	var res roamResult
	b, err := io.ReadAll(p.results)
	if err == nil && len(b) > 0 {
		err = json.Unmarshal(b, &res)
	}
	<-p.exited
	if p.err != nil || err != nil || len(b) == 0 {
		t.Fatalf("agent process: %v, report %q (%v); its output:\n%s", p.err, b, err, p.output())
	}
	return res
}

// TestRoamingAgentProcess is the PC's side of TestRoamingDownload, which
// runs it in a process of its own inside the PC's namespace.
func TestRoamingAgentProcess(t *testing.T) {
	path := os.Getenv(roamChildEnv)
	if path == "" {
		t.Skip("the agent side of TestRoamingDownload: it runs this in a network namespace")
	}
	var cfg roamChild
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	observed, logs := observer.New(zap.InfoLevel)
	stderr := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.Lock(os.Stderr), zap.DebugLevel)
	client, err := agent.NewClient(agent.Config{
		Transport: agent.TransportQUIC,
		Gateways:  []agent.GatewayConfig{{Address: cfg.Gateway, ServerName: "localhost", CAFile: cfg.CAFile}},
		Logger:    zap.New(zapcore.NewTee(observed, stderr)),
	}, cert)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	res := roamDownload(t, client)
	for _, e := range logs.FilterMessage(roamMoved).All() {
		f := e.ContextMap()
		mv := roamMove{At: e.Time}
		mv.OldPath, _ = f["old_path"].(string)
		mv.NewPath, _ = f["new_path"].(string)
		mv.Trigger, _ = f["trigger"].(string)
		mv.ProbeTime, _ = f["probe_time"].(time.Duration)
		mv.SinceChange, _ = f["since_change"].(time.Duration)
		res.Moves = append(res.Moves, mv)
	}
	out := os.NewFile(3, "results")
	defer out.Close()
	if err := json.NewEncoder(out).Encode(res); err != nil {
		t.Fatal(err)
	}
}

// roamDownload fetches /roam/big, hashing it and timing the waits
// between reads.
func roamDownload(t *testing.T, client *agent.Client) roamResult {
	ctx, cancel := context.WithTimeout(context.Background(), 2*hangGuard)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://core.example/roam/big", nil)
	resp, err := client.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	res := roamResult{Proto: resp.Proto}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var last time.Time
	for {
		n, err := resp.Body.Read(buf)
		now := time.Now()
		if n > 0 {
			if gap := now.Sub(last); !last.IsZero() && gap >= 2*time.Millisecond && len(res.Gaps) < 256 {
				res.Gaps = append(res.Gaps, roamGap{Ended: now, Took: gap})
			}
			last = now
			h.Write(buf[:n])
			res.Bytes += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", res.Bytes, err)
		}
	}
	res.SHA256 = h.Sum(nil)
	return res
}
