package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
)

// TestDeviceLifecycle runs the device lifecycle from the CLI, as the README
// describes: token, enroll with approval, use through the agent's local
// proxy, renewal by the running agent, revocation, CA rollover.
func TestDeviceLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	must(t, dir, "ca", "init", "--tenant", "acme", "--dir", "pki/ca")
	must(t, dir, "ca", "init", "--tenant", "gateway-pki", "--dir", "pki/gwca")
	must(t, dir, "ca", "issue-server", "--dir", "pki/gwca", "--host", "localhost", "--out", "pki/gw")
	pin := strings.TrimSpace(must(t, dir, "key", "create", "pki/connector.key"))
	writeFile(t, filepath.Join(dir, "admin.token"), "lifecycle-test-admin-token-0123456789")

	gwAddr, coreAddr, connAdmin, proxyAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	writeFile(t, filepath.Join(dir, "gateway.yaml"), fmt.Sprintf(`role: gateway
listen: %s
admin: {listen: "off"}
quic: {listen: "off", tunnel_listen: "off"}
tls: {cert_file: pki/gw/server.pem, key_file: pki/gw/server.key}
tenants: [{name: acme, connector_pins: [%s]}]
`, gwAddr, pin))
	connectorYAML := func(caDir string, bundle ...string) string {
		return fmt.Sprintf(`role: connector
tenant: acme
key_file: pki/connector.key
gateways: [{address: "%s", server_name: localhost, ca_file: pki/gwca/ca.pem}]
registry: registry.db
ca: {cert_file: %s/ca.pem, key_file: %s/ca.key}
agent_ca: {cert_files: [%s]}
enrollment: {agent_lifetime: 8s, poll_after: 1s}
services: [{name: core, path_prefix: /, address: "%s"}]
admin: {listen: "%s", token_file: admin.token}
`, gwAddr, caDir, caDir, strings.Join(bundle, ", "), coreAddr, connAdmin)
	}
	writeFile(t, filepath.Join(dir, "connector.yaml"), connectorYAML("pki/ca", "pki/ca/ca.pem"))
	must(t, dir, "config", "check", "gateway.yaml", "connector.yaml")
	start(t, dir, "demo", "core", "--listen", coreAddr)
	start(t, dir, "gateway", "--config", "gateway.yaml")
	conn := start(t, dir, "connector", "--config", "connector.yaml")
	waitStatus(t, &http.Client{Timeout: hangGuard}, "http://"+connAdmin+"/readyz", 200)

	// A token that needs approval; the PC enrolls and waits.
	tok := strings.TrimSpace(must(t, dir, "token", "create", "--uses", "2", "--approve", "--connector", "connector.yaml"))
	writeFile(t, filepath.Join(dir, "token"), tok)
	enroll := start(t, dir, "agent", "enroll", "--gateway", gwAddr, "--server-name", "localhost",
		"--ca-file", "pki/gwca/ca.pem", "--state-dir", "pc1", "--token-file", "token")
	var id string
	deadline := time.Now().Add(hangGuard)
	for id == "" {
		for _, line := range strings.Split(must(t, dir, "devices", "list", "--status", "pending", "--connector", "connector.yaml"), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == "pending" {
				id = f[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no pending device appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, dir, "devices", "approve", id, "--connector", "connector.yaml")
	select {
	case <-enroll.done:
	case <-time.After(hangGuard):
		t.Fatal("enroll did not finish after approval")
	}
	if enroll.err != nil || !strings.Contains(enroll.out.String(), "enrolled: tenant acme, device "+id) {
		t.Fatalf("enroll: %v\n%s", enroll.err, enroll.out)
	}

	// The management software uses the agent's local proxy.
	writeFile(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`role: agent
gateways: [{address: "%s", server_name: localhost, ca_file: pki/gwca/ca.pem}]
state_dir: pc1
http_proxy: {listen: "%s"}
log: {level: info}
`, gwAddr, proxyAddr))
	must(t, dir, "config", "check", "agent.yaml")
	ag := start(t, dir, "agent", "run", "--config", "agent.yaml")
	proxyURL, _ := url.Parse("http://" + proxyAddr)
	viaProxy := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: hangGuard}
	waitStatus(t, viaProxy, "http://core.corp.example/api/policy", 200)
	if body := proxyBody(t, viaProxy); !strings.Contains(body, `"device":"`+id+`"`) {
		t.Fatalf("the core did not see the enrolled device: %s", body)
	}

	// The running agent renews (lifetime 8 s: at about 5 s).
	waitLog(t, ag, "certificate renewed")
	waitStatus(t, viaProxy, "http://core.corp.example/api/policy", 200)

	// CA rollover: a new CA signs, the bundle keeps the old one.
	must(t, dir, "ca", "init", "--tenant", "acme", "--dir", "pki/ca2")
	writeFile(t, filepath.Join(dir, "connector.yaml"), connectorYAML("pki/ca2", "pki/ca/ca.pem", "pki/ca2/ca.pem"))
	conn.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, conn, "configuration reloaded")
	tok2 := strings.TrimSpace(must(t, dir, "token", "create", "--connector", "connector.yaml"))
	writeFile(t, filepath.Join(dir, "token2"), tok2)
	must(t, dir, "agent", "enroll", "--gateway", gwAddr, "--server-name", "localhost",
		"--ca-file", "pki/gwca/ca.pem", "--state-dir", "pc2", "--token-file", "token2")
	leaf := loadLeaf(t, filepath.Join(dir, "pc2", "agent.pem"))
	if !strings.Contains(leaf.Issuer.String(), "acme") || leaf.AuthorityKeyId == nil || !sameKeyID(t, leaf, filepath.Join(dir, "pki/ca2/ca.pem")) {
		t.Fatalf("a device enrolled after the rollover got a certificate from %s", leaf.Issuer)
	}
	waitStatus(t, viaProxy, "http://core.corp.example/api/policy", 200) // the old CA's device still works

	// Revoke: the device's requests stop.
	must(t, dir, "devices", "revoke", id, "--reason", "lost laptop", "--connector", "connector.yaml")
	deadline = time.Now().Add(hangGuard)
	for {
		resp, err := viaProxy.Get("http://core.corp.example/api/policy")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked device is still served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := must(t, dir, "devices", "show", id, "--connector", "connector.yaml"); !strings.Contains(out, "revoked") {
		t.Fatalf("devices show after revoke:\n%s", out)
	}
}

func proxyBody(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, err := c.Get("http://core.corp.example/api/policy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func loadLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	cs, err := certs.LoadCerts(path)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// sameKeyID reports whether leaf was signed by the CA in caFile.
func sameKeyID(t *testing.T, leaf *x509.Certificate, caFile string) bool {
	t.Helper()
	ca := loadLeaf(t, caFile)
	return leaf.CheckSignatureFrom(ca) == nil
}

var _ = os.Getenv
