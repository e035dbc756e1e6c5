package certs_test

import (
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/certs"
)

// fakeClock is advanced by the test only.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func expiringCert(t *testing.T, notAfter time.Time) *x509.Certificate {
	t.Helper()
	life := 90 * 24 * time.Hour
	ca := newCA(t, "public", notAfter.Add(-2*life), 0)
	leaf, err := ca.IssueServer(newKey(t).Public(), []string{"gw.example"}, notAfter.Add(-life), life)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// days renders a duration as days and hours, e.g. "3d0h", "-1d1h".
func days(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%dd%dh", sign, d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// The clock walks hour by hour from 20 days before expiry to 5 days
// after; the watcher checks at every step.
func TestExpiryWatcherSchedule(t *testing.T) {
	notAfter := t0.Add(60 * 24 * time.Hour)
	leaf := expiringCert(t, notAfter)
	clock := &fakeClock{now: notAfter.Add(-20 * 24 * time.Hour)}
	core, logs := observer.New(zapcore.DebugLevel)
	w, err := certs.NewExpiryWatcher("gateway certificate", func() []*x509.Certificate { return []*x509.Certificate{leaf} },
		certs.ExpiryOptions{Now: clock.Now, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for ; !clock.now.After(notAfter.Add(5 * 24 * time.Hour)); clock.now = clock.now.Add(time.Hour) {
		w.Check()
		for _, e := range logs.TakeAll() {
			f := e.ContextMap()
			if f["watch"] != "gateway certificate" || f["serial"] != leaf.SerialNumber.Text(16) {
				t.Errorf("fields %v lack the watch name or serial", f)
			}
			got = append(got, fmt.Sprintf("%s %s at %s", e.Level, e.Message, days(notAfter.Sub(clock.now))))
		}
		if left, want := w.SecondsLeft(), notAfter.Sub(clock.now).Seconds(); left != want {
			t.Fatalf("SecondsLeft %v, want %v", left, want)
		}
	}
	var want []string
	for d := 14; d >= 4; d-- {
		want = append(want, fmt.Sprintf("warn certificate expires soon at %dd0h", d))
	}
	for d := 3; d >= 0; d-- {
		want = append(want, fmt.Sprintf("error certificate about to expire at %dd0h", d))
	}
	// Expiry is worse news: logged at once, then daily.
	want = append(want, "error certificate expired at -0d1h")
	for d := 1; d <= 4; d++ {
		want = append(want, fmt.Sprintf("error certificate expired at -%dd1h", d))
	}
	if !slices.Equal(got, want) {
		t.Errorf("logged:\n%q\nwant:\n%q", got, want)
	}
}

// Each certificate is followed on its own; a renewed one starts afresh and
// SecondsLeft reports the first to expire.
func TestExpiryWatcherSeveralCertificates(t *testing.T) {
	now := t0
	soon := expiringCert(t, now.Add(10*24*time.Hour))
	later := expiringCert(t, now.Add(12*24*time.Hour))
	fine := expiringCert(t, now.Add(60*24*time.Hour))
	clock := &fakeClock{now: now}
	watched := []*x509.Certificate{soon, later}
	core, logs := observer.New(zapcore.DebugLevel)
	w, err := certs.NewExpiryWatcher("tenant acme CA bundle", func() []*x509.Certificate { return watched },
		certs.ExpiryOptions{Now: clock.Now, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	w.Check()
	if n := logs.FilterMessage("certificate expires soon").Len(); n != 2 {
		t.Errorf("%d warnings, want one per certificate", n)
	}
	if got, want := w.SecondsLeft(), (10 * 24 * time.Hour).Seconds(); got != want {
		t.Errorf("SecondsLeft %v, want %v", got, want)
	}
	clock.now = clock.now.Add(time.Hour)
	w.Check()
	if n := logs.Len(); n != 2 {
		t.Errorf("%d logs an hour later, want still 2", n)
	}
	// Renewed: the new certificate is far from expiry, nothing to say.
	watched = []*x509.Certificate{fine}
	logs.TakeAll()
	w.Check()
	if n := logs.Len(); n != 0 {
		t.Errorf("logged %v for a fresh certificate", logs.All())
	}
	watched = nil
	if left := w.SecondsLeft(); !math.IsNaN(left) {
		t.Errorf("SecondsLeft with nothing to watch = %v, want NaN", left)
	}
}

func TestNewExpiryWatcherRefuses(t *testing.T) {
	none := func() []*x509.Certificate { return nil }
	for _, tt := range []struct {
		name  string
		watch string
		certs func() []*x509.Certificate
		opts  certs.ExpiryOptions
	}{
		{"no name", "", none, certs.ExpiryOptions{}},
		{"no function", "x", nil, certs.ExpiryOptions{}},
		{"error before warn", "x", none, certs.ExpiryOptions{WarnBefore: time.Hour, ErrorBefore: 2 * time.Hour}},
		{"negative repeat", "x", none, certs.ExpiryOptions{Repeat: -time.Hour}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := certs.NewExpiryWatcher(tt.watch, tt.certs, tt.opts); err == nil {
				t.Error("accepted")
			}
		})
	}
}
