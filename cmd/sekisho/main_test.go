package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sekisho/sekisho/certs/certstest"
)

// bin is the sekisho binary built once for the tests that run it as a
// separate process, as operators do.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sekisho-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "sekisho")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(certstest.IgnoreLibraryGoroutines()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// run executes the binary and returns its stdout, stderr and exit status.
func run(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExampleConfigsCheck(t *testing.T) {
	root, _ := filepath.Abs("../..")
	files, _ := filepath.Glob(filepath.Join(root, "docker", "*.yaml"))
	var configs []string
	for _, f := range files {
		if !strings.HasSuffix(f, "compose.yaml") && filepath.Base(f) != "catalog.yaml" {
			configs = append(configs, f)
		}
	}
	if len(configs) < 3 {
		t.Fatalf("found %d example configs", len(configs))
	}
	out, errOut, code := run(t, root, append([]string{"config", "check"}, configs...)...)
	if code != 0 {
		t.Fatalf("config check of the examples failed:\n%s%s", out, errOut)
	}
	out, errOut, code = run(t, root, "catalog", "check", filepath.Join(root, "docker", "catalog.yaml"))
	if code != 0 {
		t.Fatalf("catalog check of the example failed:\n%s%s", out, errOut)
	}
}

func TestConfigCheckErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "role: gateway\nlisten: :443\nlisen: x\n", "bad.yaml:3: lisen: unknown key"},
		{"misspelled nested", "role: gateway\nlimits:\n  idle_timeuot: 1s\n", "bad.yaml:3: limits.idle_timeuot"},
		{"wrong type", "role: gateway\nlimits:\n  idle_timeout: soon\n", "bad.yaml:3: limits.idle_timeout"},
		{"duration as number", "role: connector\ntimeouts:\n  dial: 10\n", "bad.yaml:3: timeouts.dial"},
		{"bad pin", "role: gateway\ntenants:\n  - name: acme\n    connector_pins: [md5/abc]\n", "bad.yaml:4: tenants[0].connector_pins[0]"},
		{"missing tenants", "role: gateway\ntls: {cert_file: a, key_file: b}\n", "tenants: at least one tenant"},
		{"missing tenant name", "role: gateway\ntls: {cert_file: a, key_file: b}\ntenants:\n  - connector_pins: [sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=]\n", "bad.yaml:4: tenants[0].name"},
		{"connector without services", "role: connector\ntenant: acme\nkey_file: k\ngateways: [{address: 'gw:443'}]\nagent_ca: {cert_files: [ca.pem]}\n", "services: at least one service"},
		{"service address", "role: connector\nservices:\n  - name: core\n    path_prefix: /\n    address: nowhere\n", "bad.yaml:5: services[0].address"},
		{"wrong role", "role: connector\n", ""},
		{"no role", "listen: :443\n", "role: required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.yaml")
			writeFile(t, path, tc.yaml)
			_, errOut, code := run(t, dir, "config", "check", "bad.yaml")
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr does not contain %q:\n%s", tc.want, errOut)
			}
		})
	}
}

func TestDemoJSON(t *testing.T) {
	out, errOut, code := run(t, t.TempDir(), "demo", "--duration", "1s", "--agents", "3", "--payload-size", "64KiB", "--json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	var sum struct {
		OK     int64 `json:"requests_ok"`
		Failed int64 `json:"requests_failed"`
		Agents int   `json:"agents"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	if sum.OK == 0 || sum.Failed != 0 || sum.Agents != 3 {
		t.Fatalf("summary %+v", sum)
	}
}

// TestSystemdUnits checks the unit files with systemd-analyze verify, with
// the binary path pointed at the test build.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing; .ci/run installs systemd")
		}
		t.Skip("systemd-analyze not installed")
	}
	root, _ := filepath.Abs("../..")
	units, _ := filepath.Glob(filepath.Join(root, "deploy", "systemd", "*.service"))
	if len(units) != 2 {
		t.Fatalf("found %d unit files", len(units))
	}
	dir := t.TempDir()
	var args []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "Type=notify") || !strings.Contains(string(b), "NoNewPrivileges=yes") {
			t.Errorf("%s: not a hardened notify unit", u)
		}
		out := filepath.Join(dir, filepath.Base(u))
		writeFile(t, out, strings.ReplaceAll(string(b), "/usr/local/bin/sekisho", bin))
		args = append(args, out)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
