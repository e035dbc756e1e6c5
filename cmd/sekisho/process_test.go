package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/demo"
)

const hangGuard = 20 * time.Second

// proc is a running sekisho process.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, dir string, args ...string) *proc {
	return startEnv(t, dir, nil, args...)
}

func startEnv(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.out)
		}
	})
	return p
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func must(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, dir, args...)
	if code != 0 {
		t.Fatalf("sekisho %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// TestProcesses runs the roles as separate processes with files made by
// the CLI, the way the README does: a request succeeds; the connector is
// killed (SIGKILL, no goodbye) and agents get 503 with Retry-After; a new
// connector brings service back without touching the gateway; SIGTERM to
// the gateway lets an in-flight download finish, then it exits cleanly.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	must(t, dir, "ca", "init", "--tenant", "acme", "--dir", "pki/ca")
	must(t, dir, "ca", "init", "--tenant", "gateway-pki", "--dir", "pki/gwca")
	must(t, dir, "ca", "issue-server", "--dir", "pki/gwca", "--host", "localhost", "--host", "127.0.0.1", "--out", "pki/gw")
	pin := strings.TrimSpace(must(t, dir, "key", "create", "pki/connector.key"))
	must(t, dir, "ca", "issue", "--dir", "pki/ca", "--device", "pc-1", "--out", "pki/agent")

	gwAddr, coreAddr, gwAdmin, connAdmin := freePort(t), freePort(t), freePort(t), freePort(t)
	gatewayYAML := func(extra string) string {
		return fmt.Sprintf(`role: gateway
listen: %s
tls: {cert_file: pki/gw/server.pem, key_file: pki/gw/server.key}
admin: {listen: "%s"}
quic: {listen: "off", tunnel_listen: "off"}
tenants:
  - name: acme
    connector_pins: [%s]
%s
tunnel: {keepalive_interval: 500ms, write_timeout: 500ms}
`, gwAddr, gwAdmin, pin, extra)
	}
	writeFile(t, filepath.Join(dir, "gateway.yaml"), gatewayYAML(""))
	writeFile(t, filepath.Join(dir, "connector.yaml"), fmt.Sprintf(`role: connector
tenant: acme
key_file: pki/connector.key
gateways: [{address: "%s", server_name: localhost, ca_file: pki/gwca/ca.pem}]
agent_ca: {cert_files: [pki/ca/ca.pem]}
services: [{name: core, path_prefix: /, address: "%s"}]
backoff: {min: 50ms, max: 500ms}
admin: {listen: "%s"}
`, gwAddr, coreAddr, connAdmin))
	must(t, dir, "config", "check", "gateway.yaml", "connector.yaml")

	const payload = 512 << 20
	start(t, dir, "demo", "core", "--listen", coreAddr, "--payload-size", "512MiB")
	notify := listenNotify(t, filepath.Join(dir, "notify.sock"))
	gw := startEnv(t, dir, []string{"NOTIFY_SOCKET=" + filepath.Join(dir, "notify.sock")}, "gateway", "--config", "gateway.yaml")
	notify.expect(t, "READY=1")
	conn := start(t, dir, "connector", "--config", "connector.yaml")
	client := agentClient(t, dir)
	url := "https://" + gwAddr

	waitStatus(t, client, url+"/api/policy", 200)
	plain := &http.Client{Timeout: hangGuard}
	waitStatus(t, plain, "http://"+gwAdmin+"/readyz", 200)
	waitStatus(t, plain, "http://"+connAdmin+"/readyz", 200)

	// SIGHUP with a broken file: refused, nothing changes; with a good one
	// (a second tenant): applied, and the tunnel stays up.
	writeFile(t, filepath.Join(dir, "gateway.yaml"), gatewayYAML("  - name: Bad Tenant"))
	gw.cmd.Process.Signal(syscall.SIGHUP)
	notify.expect(t, "RELOADING=1")
	notify.expect(t, "READY=1")
	waitLog(t, gw, "reload refused")
	writeFile(t, filepath.Join(dir, "gateway.yaml"), gatewayYAML("  - name: beta\n    connector_pins: ["+pin2(t, dir)+"]"))
	gw.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, gw, "configuration reloaded")
	if !strings.Contains(body(t, plain, "http://"+gwAdmin+"/api/status"), `"name": "beta"`) {
		t.Fatal("the reloaded tenant is not in the status")
	}
	waitStatus(t, client, url+"/api/policy", 200)
	conn.cmd.Process.Signal(syscall.SIGKILL)
	<-conn.done
	waitStatus(t, client, url+"/api/policy", 503)
	if _, retry := get(t, client, url+"/api/policy"); retry == "" {
		t.Fatal("503 without Retry-After")
	}
	start(t, dir, "connector", "--config", "connector.yaml")
	waitStatus(t, client, url+"/api/policy", 200)

	resp, err := client.Get(url + "/patches/big.msu")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := demo.PayloadReader()
	if err := sameBytes(io.LimitReader(resp.Body, 1<<20), io.LimitReader(want, 1<<20)); err != nil {
		t.Fatal(err)
	}
	gw.cmd.Process.Signal(syscall.SIGTERM)
	notify.expect(t, "STOPPING=1")
	deadline := time.Now().Add(hangGuard)
	for {
		c, err := net.DialTimeout("tcp", gwAddr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("gateway still accepting after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := sameBytes(resp.Body, io.LimitReader(want, payload-1<<20)); err != nil {
		t.Fatalf("download after SIGTERM: %v", err)
	}
	select {
	case <-gw.done:
	case <-time.After(hangGuard):
		t.Fatal("gateway did not exit after draining")
	}
	if gw.err != nil {
		t.Fatalf("gateway exit: %v", gw.err)
	}
	if !strings.Contains(gw.out.String(), "gateway draining") {
		t.Fatalf("gateway log lacks the drain:\n%s", gw.out)
	}
}

func agentClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki/agent/agent.pem"), filepath.Join(dir, "pki/agent/agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "pki/gwca/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: hangGuard}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func waitStatus(t *testing.T, c *http.Client, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		code, _ := get(t, c, url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: status %d, want %d", url, code, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameBytes reads both to their end and compares them.
func sameBytes(got, want io.Reader) error {
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	for {
		k, err := io.ReadFull(got, a)
		if k > 0 {
			if _, werr := io.ReadFull(want, b[:k]); werr != nil {
				return fmt.Errorf("more bytes than expected after %d", n)
			}
			if !bytes.Equal(a[:k], b[:k]) {
				return fmt.Errorf("bytes differ near offset %d", n)
			}
			n += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if k, _ := want.Read(b[:1]); k != 0 {
				return fmt.Errorf("stream ended early after %d bytes", n)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", n, err)
		}
	}
}

// waitLog waits until the process has logged msg.
func waitLog(t *testing.T, p *proc, msg string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(p.out.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("process never logged %q", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pin2 makes a second connector key and returns its pin.
func pin2(t *testing.T, dir string) string {
	return strings.TrimSpace(must(t, dir, "key", "create", "pki/connector2.key"))
}

func body(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// notifySocket plays systemd's side of sd_notify.
type notifySocket struct{ c *net.UnixConn }

func listenNotify(t *testing.T, path string) *notifySocket {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{c: c}
}

// expect waits for the next message that begins with want, skipping
// others.
func (n *notifySocket) expect(t *testing.T, want string) {
	t.Helper()
	buf := make([]byte, 4096)
	n.c.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		k, err := n.c.Read(buf)
		if err != nil {
			t.Fatalf("waiting for sd_notify %q: %v", want, err)
		}
		if strings.HasPrefix(string(buf[:k]), want) {
			return
		}
	}
}

// TestGatewayACMEProcess runs `sekisho gateway` with tls: {acme: ...}
// against Pebble, as the README shows: the gateway obtains its certificate
// through real HTTP-01 validation and serves agents with it.
func TestGatewayACMEProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := certstest.StartPebble(t, certstest.PebbleOptions{})
	dir := t.TempDir()
	must(t, dir, "ca", "init", "--tenant", "acme", "--dir", "pki/ca")
	pin := strings.TrimSpace(must(t, dir, "key", "create", "pki/connector.key"))
	must(t, dir, "ca", "issue", "--dir", "pki/ca", "--device", "pc-1", "--out", "pki/agent")
	writeFile(t, filepath.Join(dir, "pebble-root.pem"), string(p.TLSRootPEM))
	gwAddr, httpAddr, coreAddr := freePort(t), freePort(t), freePort(t)
	p.SetHTTP01Target(httpAddr)
	writeFile(t, filepath.Join(dir, "gateway.yaml"), fmt.Sprintf(`role: gateway
listen: %s
admin: {listen: "off"}
quic: {listen: "off", tunnel_listen: "off"}
tls:
  acme:
    domains: [gw.sekisho.test]
    ca: %s
    trusted_roots_file: pebble-root.pem
    storage: acme
    challenges: [http-01]
    http_listen: "%s"
    http_port: %s
tenants:
  - name: acme
    connector_pins: [%s]
`, gwAddr, p.DirectoryURL, httpAddr, portOf(httpAddr), pin))
	must(t, dir, "config", "check", "gateway.yaml")
	gw := start(t, dir, "gateway", "--config", "gateway.yaml")
	waitLog(t, gw, "certificate obtained")

	roots := p.IssuerRoots(t)
	writeFile(t, filepath.Join(dir, "issuer.pem"), string(p.IssuerRootPEM(t)))
	writeFile(t, filepath.Join(dir, "connector.yaml"), fmt.Sprintf(`role: connector
tenant: acme
key_file: pki/connector.key
admin: {listen: "off"}
gateways: [{address: "%s", server_name: gw.sekisho.test, ca_file: issuer.pem}]
agent_ca: {cert_files: [pki/ca/ca.pem]}
services: [{name: core, path_prefix: /, address: "%s"}]
`, gwAddr, coreAddr))
	start(t, dir, "demo", "core", "--listen", coreAddr)
	start(t, dir, "connector", "--config", "connector.yaml")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki/agent/agent.pem"), filepath.Join(dir, "pki/agent/agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "gw.sekisho.test",
		Certificates: []tls.Certificate{cert}}}
	defer tr.CloseIdleConnections()
	waitStatus(t, &http.Client{Transport: tr, Timeout: hangGuard}, "https://"+gwAddr+"/api/policy", 200)
	if p.HTTP01Connections() == 0 {
		t.Fatal("Pebble never validated through the gateway's HTTP-01 listener")
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
