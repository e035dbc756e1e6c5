package agent

import (
	"context"
	"errors"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRenew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		issuedAt time.Time
		lifetime time.Duration
	}{
		{"before expiry", time.Now(), 3 * time.Hour},
		{"expired, within the grace period", time.Now().Add(-8 * 24 * time.Hour), 7 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t)
			dir := filepath.Join(t.TempDir(), "state")
			old := g.provision(t, dir, tc.issuedAt, tc.lifetime)
			a, err := New(g.config(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			e, err := a.Renew(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if e.DeviceID != old.Principal.DeviceID || e.Certificate.SerialNumber.Cmp(old.Leaf().SerialNumber) == 0 ||
				!time.Now().Before(e.Certificate.NotAfter) {
				t.Fatalf("renewed certificate: device %s serial %v not after %v", e.DeviceID, e.Certificate.SerialNumber, e.Certificate.NotAfter)
			}
			var from []*big.Int
			g.set(func(g *fakeGateway) { from = g.renewedFrom })
			if len(from) != 1 || from[0].Cmp(old.Leaf().SerialNumber) != 0 {
				t.Fatalf("gateway saw certificates %v, want the old one", from)
			}
			stored, err := LoadIdentity(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !stored.Leaf().Equal(e.Certificate) || !publicKeysEqual(stored.Key.Public(), old.Key.Public()) {
				t.Fatal("stored identity is not the renewed certificate with the same key")
			}
			if len(stored.CatalogKeys) != 1 || stored.CatalogKeys[0].ID != "k1" {
				t.Fatalf("catalog keys = %+v, want the renewal's", stored.CatalogKeys)
			}
			checkPrivateFiles(t, dir)
		})
	}
}

func TestRenewRefusedPastGrace(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.grace = time.Hour })
	dir := t.TempDir()
	old := g.provision(t, dir, time.Now().Add(-8*24*time.Hour), 7*24*time.Hour)
	a, err := New(g.config(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Renew(context.Background()); !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	stored, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Leaf().Equal(old.Leaf()) || !a.Identity().Leaf().Equal(old.Leaf()) {
		t.Fatal("a refused renewal replaced the certificate")
	}
}

// TestRenewSwapsCertificate checks that connections made after a renewal
// present the new certificate, with no restart.
func TestRenewSwapsCertificate(t *testing.T) {
	g := newFakeGateway(t)
	a := g.newAgent(t, nil)
	oldSerial := a.Identity().Leaf().SerialNumber
	roundTrip := func() {
		conn, err := a.Client().DialConnect(context.Background(), "echo")
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("x"))
		io.ReadFull(conn, make([]byte, 1))
		conn.Close()
		resp, err := a.Client().HTTPClient().Get("https://core.example/api/policy")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	roundTrip()
	e, err := a.Renew(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip()
	a.Client().CloseIdleConnections()
	want := []*big.Int{oldSerial, e.Certificate.SerialNumber}
	connects, requests := g.seenConnects(), g.seenRequests()
	if len(connects) != 2 || len(requests) != 2 {
		t.Fatalf("gateway saw %d connects and %d requests, want 2 each", len(connects), len(requests))
	}
	for i, w := range want {
		if connects[i].serial.Cmp(w) != 0 || requests[i].serial.Cmp(w) != 0 {
			t.Fatalf("round trip %d presented %v and %v, want %v", i, connects[i].serial, requests[i].serial, w)
		}
	}
	if requests[0].proto != "HTTP/2.0" || requests[0].method != http.MethodGet || requests[0].host != "core.example" || requests[0].uri != "/api/policy" {
		t.Fatalf("request = %+v", requests[0])
	}
}

// TestRenewAfterReenrollment checks that an agent whose state directory
// was enrolled again behind its back does not overwrite the new identity.
func TestRenewAfterReenrollment(t *testing.T) {
	g := newFakeGateway(t)
	dir := t.TempDir()
	g.provision(t, dir, time.Now(), 3*time.Hour)
	a, err := New(g.config(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	newer := g.provision(t, dir, time.Now(), 3*time.Hour) // what "sekisho agent enroll" would leave
	if _, err := a.Renew(context.Background()); err == nil || !strings.Contains(err.Error(), "changed while the agent ran") {
		t.Fatalf("err = %v, want the key file changed", err)
	}
	stored, err := LoadIdentity(dir)
	if err != nil || !stored.Leaf().Equal(newer.Leaf()) {
		t.Fatalf("stored identity replaced (%v)", err)
	}
}
