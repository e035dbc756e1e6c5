package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

func TestEnrollIssued(t *testing.T) {
	g := newFakeGateway(t)
	dir := filepath.Join(t.TempDir(), "state")
	e, err := Enroll(context.Background(), g.config(t, dir), g.token, EnrollInfo{Hostname: "PC-0042", OS: "windows"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(id.Leaf().PublicKey, id.Key.Public()) {
		t.Fatal("stored certificate is not for the stored key")
	}
	if e.Tenant != testTenant || e.DeviceID != "d-0001" || !e.Certificate.Equal(id.Leaf()) || e.RenewAfter.IsZero() {
		t.Fatalf("enrollment = %+v", e)
	}
	if len(id.CatalogKeys) != 1 || id.CatalogKeys[0].ID != "k1" || !id.CatalogKeys[0].PublicKey.Equal(g.catalog) {
		t.Fatalf("catalog keys = %+v", id.CatalogKeys)
	}
	checkPrivateFiles(t, dir)

	bodies := g.seenBodies()
	if len(bodies) != 1 {
		t.Fatalf("%d requests, want 1", len(bodies))
	}
	var req map[string]string
	if err := json.Unmarshal(bodies[0], &req); err != nil {
		t.Fatal(err)
	}
	if req["token"] != g.token || req["hostname"] != "PC-0042" || req["os"] != "windows" || !strings.Contains(req["csr"], "CERTIFICATE REQUEST") {
		t.Fatalf("request = %v", req)
	}
	if _, ok := req["device_id"]; ok || len(req) != 4 {
		t.Fatalf("request keys = %v, want token, csr, hostname, os", slices.Sorted(maps.Keys(req)))
	}
	assertNoKeyMaterial(t, bodies[0], id.Key)
}

// checkPrivateFiles checks that the state files are owner-only.
func checkPrivateFiles(t *testing.T, dir string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return // protected by a DACL, not by mode bits
	}
	for _, name := range []string{KeyFile, CertFile, CatalogKeysFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: mode %v, want 0700", fi.Mode().Perm())
	}
}

// assertNoKeyMaterial fails if body holds the private key in any usual
// encoding.
func assertNoKeyMaterial(t *testing.T, body []byte, key crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{der, scalar} {
		for _, enc := range []string{
			string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret),
			base64.RawStdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret),
		} {
			if bytes.Contains(body, []byte(enc)) {
				t.Fatalf("request body holds private key material")
			}
		}
	}
	if bytes.Contains(body, []byte("PRIVATE KEY")) {
		t.Fatal("request body holds a PEM private key")
	}
}

// enrollAsync runs Enroll in a goroutine, for tests that drive its clock.
func enrollAsync(t *testing.T, cfg Config, token string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := Enroll(context.Background(), cfg, token, EnrollInfo{Hostname: "PC-0042"})
		errc <- err
	}()
	return errc
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(hang):
		t.Fatal("enrollment hangs")
		return nil
	}
}

func TestEnrollPendingApproval(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.pendingPolls = 2 })
	clk := newFakeClock(time.Now())
	dir := t.TempDir()
	cfg := g.config(t, dir)
	cfg.Now, cfg.After = clk.Now, clk.After
	errc := enrollAsync(t, cfg, g.token)
	clk.expect(t, 7*time.Second) // poll_after_seconds of the first answer
	clk.expect(t, 7*time.Second) // ... and of the first poll's
	if err := waitErr(t, errc); err != nil {
		t.Fatal(err)
	}
	bodies := g.seenBodies()
	if len(bodies) != 3 {
		t.Fatalf("%d requests, want the token request and 2 polls", len(bodies))
	}
	var first, poll fakeRequest
	json.Unmarshal(bodies[0], &first)
	json.Unmarshal(bodies[2], &poll)
	if poll.Token != "" || poll.DeviceID != "d-0001" || poll.Tenant != testTenant || poll.CSR != first.CSR {
		t.Fatalf("poll = %+v, want device_id d-0001, tenant acme and the first CSR, no token", poll)
	}
	if _, err := LoadIdentity(dir); err != nil {
		t.Fatal(err)
	}
}

func TestEnrollRetryAfter(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.unavailable = 1 })
	clk := newFakeClock(time.Now())
	cfg := g.config(t, t.TempDir())
	cfg.Now, cfg.After = clk.Now, clk.After
	errc := enrollAsync(t, cfg, g.token)
	clk.expect(t, 9*time.Second) // the 503's Retry-After
	if err := waitErr(t, errc); err != nil {
		t.Fatal(err)
	}
	if n := len(g.seenBodies()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestEnrollRefused(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.refuse = true })
	dir := filepath.Join(t.TempDir(), "state")
	_, err := Enroll(context.Background(), g.config(t, dir), g.token, EnrollInfo{})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir written after a refusal: %v", err)
	}
}

// deadAddr returns a loopback address that refuses connections.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestEnrollFailover(t *testing.T) {
	g := newFakeGateway(t)
	dir := t.TempDir()
	cfg := g.config(t, dir)
	cfg.Gateways = append([]GatewayConfig{{Address: deadAddr(t), RootCAs: g.server.Roots}}, cfg.Gateways...)
	if _, err := Enroll(context.Background(), cfg, g.token, EnrollInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err != nil {
		t.Fatal(err)
	}
}

func TestEnrollUnreachable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	tok, _ := auth.NewToken(testTenant, nil)
	cfg := Config{Gateways: []GatewayConfig{{Address: deadAddr(t)}, {Address: deadAddr(t)}}, StateDir: dir}
	_, err := Enroll(context.Background(), cfg, tok.Text, EnrollInfo{})
	var ue *unreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want no gateway reachable", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("state dir written")
	}
}

func TestEnrollMalformedToken(t *testing.T) {
	var dials atomic.Int32
	cfg := Config{Gateways: []GatewayConfig{{Address: "127.0.0.1:1"}}, StateDir: t.TempDir(),
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("no")
		}}
	_, err := Enroll(context.Background(), cfg, "sek1_acme_typo", EnrollInfo{})
	if !errors.Is(err, auth.ErrTokenMalformed) || dials.Load() != 0 {
		t.Fatalf("err = %v after %d dials, want a malformed token error and no dial", err, dials.Load())
	}
}

func TestAcceptIssued(t *testing.T) {
	ca, err := certs.NewCA(testTenant, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := certs.NewKey()
	other, _ := certs.NewKey()
	now := time.Now()
	issue := func(pub crypto.PublicKey, at time.Time) string {
		leaf, err := ca.IssueAgent(certs.AgentRequest{DeviceID: "d-1", PublicKey: pub, Now: at, Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return string(certs.EncodeCert(leaf.Raw))
	}
	server, err := ca.IssueServer(key.Public(), []string{"localhost"}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		a    answer
		want string // substring of the error; "" for success
	}{
		{"ok", answer{Certificate: issue(key.Public(), now), DeviceID: "d-1"}, ""},
		{"not our key", answer{Certificate: issue(other.Public(), now)}, "not for this PC's key"},
		{"expired", answer{Certificate: issue(key.Public(), now.Add(-2*time.Hour))}, "expired"},
		{"other device", answer{Certificate: issue(key.Public(), now), DeviceID: "d-2"}, "answer says"},
		{"no device name", answer{Certificate: string(certs.EncodeCert(server.Raw))}, "no sekisho device"},
		{"bad catalog key", answer{Certificate: issue(key.Public(), now), CatalogKeys: []CatalogKey{{ID: "k", PublicKey: []byte{1}}}}, "Ed25519"},
		{"no certificate", answer{}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := acceptIssued(&tc.a, key, now)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
