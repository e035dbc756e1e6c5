package auth_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
)

func serials(cs []auth.RevokedCert) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	return out
}

func testRevoke(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	if err := s.CreateDevice(ctx, device("acme", "pc", auth.DeviceActive)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	certs := []auth.RevokedCert{{Serial: "1f2e3d", NotAfter: t0.Add(72 * time.Hour)}, {Serial: "a", NotAfter: t0}}
	if err := s.Revoke(ctx, "acme", "pc", "stolen", certs, at); err != nil {
		t.Fatal(err)
	}
	d, _ := s.GetDevice(ctx, "acme", "pc")
	want := at.Truncate(time.Microsecond)
	if d.Status != auth.DeviceRevoked || !d.RevokedAt.Equal(want) || d.RevokeReason != "stolen" || !d.UpdatedAt.Equal(want) {
		t.Errorf("revoked device: %+v", d)
	}
	got, err := s.Revocations(ctx, "acme", at, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantCerts := []auth.RevokedCert{
		{Serial: "1f2e3d", NotAfter: certs[0].NotAfter.Truncate(time.Microsecond), DeviceID: "pc", RevokedAt: want, Reason: "stolen"},
	}
	if !slices.Equal(got, wantCerts) {
		t.Errorf("Revocations =\n%+v, want\n%+v", got, wantCerts)
	}

	// Revoking again keeps the first time and reason, adds new certs.
	later := at.Add(time.Hour)
	more := []auth.RevokedCert{{Serial: "1f2e3d", NotAfter: t0}, {Serial: "bb", NotAfter: t0.Add(96 * time.Hour)}}
	if err := s.Revoke(ctx, "acme", "pc", "again", more, later); err != nil {
		t.Fatal(err)
	}
	d, _ = s.GetDevice(ctx, "acme", "pc")
	if !d.RevokedAt.Equal(want) || d.RevokeReason != "stolen" {
		t.Errorf("second Revoke changed the first: %+v", d)
	}
	got, _ = s.Revocations(ctx, "acme", at, 0)
	if !slices.Equal(serials(got), []string{"1f2e3d", "bb"}) || !got[0].NotAfter.Equal(wantCerts[0].NotAfter) {
		t.Errorf("after second Revoke: %+v", got)
	}
	if other, _ := s.Revocations(ctx, "other", at, 0); len(other) != 0 {
		t.Errorf("another tenant sees %+v", other)
	}

	if err := s.Revoke(ctx, "acme", "nope", "x", nil, at); !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Errorf("Revoke of a missing device = %v, want ErrDeviceNotFound", err)
	}
	if err := s.Revoke(ctx, "acme", "pc", "x", []auth.RevokedCert{{Serial: "0x12", NotAfter: t0}}, at); err == nil {
		t.Error("Revoke accepted a malformed serial")
	}
}

// A revoked cert stays on the pushed list until NotAfter+grace has passed,
// never earlier: an expired cert can still renew within the grace period.
func testRevocationWindow(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	if err := s.CreateDevice(ctx, device("acme", "pc", auth.DeviceActive)); err != nil {
		t.Fatal(err)
	}
	const grace = 7 * 24 * time.Hour
	notAfter := t0.Add(48 * time.Hour)
	if err := s.Revoke(ctx, "acme", "pc", "lost", []auth.RevokedCert{{Serial: "abc", NotAfter: notAfter}}, t0); err != nil {
		t.Fatal(err)
	}
	end := notAfter.Add(grace)
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"valid", t0, true},
		{"just expired", notAfter.Add(time.Second), true},
		{"inside grace", notAfter.Add(grace / 2), true},
		{"last microsecond of grace", end.Add(-time.Microsecond), true},
		{"end of grace", end, true},
		{"a microsecond after", end.Add(time.Microsecond + time.Nanosecond), false},
		{"long after", end.Add(365 * 24 * time.Hour), false},
	}
	for _, tt := range tests {
		got, err := s.Revocations(ctx, "acme", tt.now, grace)
		if err != nil {
			t.Fatal(err)
		}
		if (len(got) == 1) != tt.want {
			t.Errorf("%s: Revocations = %v, want listed=%v", tt.name, serials(got), tt.want)
		}
	}
	if got, _ := s.Revocations(ctx, "acme", end.Add(time.Hour), 0); len(got) != 0 {
		t.Errorf("with no grace, an expired cert is still pushed: %v", serials(got))
	}
}

func testAuditLog(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	event := func(min int, action auth.AuditAction, dev string) auth.AuditEvent {
		return auth.AuditEvent{Time: t0.Add(time.Duration(min) * time.Minute), Tenant: "acme", DeviceID: dev,
			Action: action, Source: "198.51.100.7:50123", Reason: "r" + dev, Actor: "connector", TokenID: "tok"}
	}
	// Written out of time order; two events share a time.
	events := []auth.AuditEvent{
		event(2, auth.AuditApprove, "a"),
		event(0, auth.AuditTokenCreate, ""),
		event(1, auth.AuditEnroll, "a"),
		event(3, auth.AuditRevoke, "a"),
		event(3, auth.AuditRefuse, "b"),
	}
	for _, e := range events {
		if err := s.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Audit(ctx, auth.AuditEvent{Time: t0, Tenant: "other", Action: auth.AuditEnroll}); err != nil {
		t.Fatal(err)
	}
	all, err := s.AuditLog(ctx, "acme", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []auth.AuditEvent{events[1], events[2], events[0], events[3], events[4]}
	for i := range want {
		want[i].Time = want[i].Time.Truncate(time.Microsecond)
	}
	if !slices.Equal(all, want) {
		t.Errorf("AuditLog =\n%+v, want\n%+v", all, want)
	}
	if got, _ := s.AuditLog(ctx, "acme", time.Time{}, 2); !slices.Equal(got, want[3:]) {
		t.Errorf("newest 2 = %+v, want %+v", got, want[3:])
	}
	if got, _ := s.AuditLog(ctx, "acme", t0.Add(2*time.Minute), 0); !slices.Equal(got, want[2:]) {
		t.Errorf("since minute 2 = %+v, want %+v", got, want[2:])
	}
	if got, _ := s.AuditLog(ctx, "other", time.Time{}, 0); len(got) != 1 {
		t.Errorf("other tenant: %+v", got)
	}
}

func testNextVersion(t *testing.T, b backend) {
	ctx := ctxT(t)
	s1, dsn := open(t, b)
	s2 := authtest.Open(t, dsn)
	start := uint64(time.Now().Add(-time.Second).UnixMicro())
	const workers, calls = 10, 10
	got := make([][]uint64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		s := []auth.Store{s1, s2}[w%2]
		wg.Go(func() {
			for range calls {
				v, err := s.NextVersion(ctx, "acme")
				if err != nil {
					errs[w] = err
					return
				}
				got[w] = append(got[w], v)
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for w := range workers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		if !slices.IsSorted(got[w]) {
			t.Errorf("worker %d saw versions go back: %v", w, got[w])
		}
		for _, v := range got[w] {
			if seen[v] {
				t.Errorf("version %d handed out twice", v)
			}
			seen[v] = true
			if v < start {
				t.Errorf("version %d is below the clock (%d)", v, start)
			}
		}
	}
	// One caller after another: strictly increasing; tenants are separate.
	a, _ := s1.NextVersion(ctx, "acme")
	b2, _ := s2.NextVersion(ctx, "acme")
	if b2 <= a {
		t.Errorf("NextVersion %d then %d", a, b2)
	}
	if _, err := s1.NextVersion(ctx, "other"); err != nil {
		t.Error(err)
	}
}

// A registry restored from an old backup hands out versions above those it
// handed out before, so gateways do not ignore its snapshots.
func testNextVersionRestore(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, dsn := open(t, b)
	before, err := s.NextVersion(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	b.exec(t, dsn, "UPDATE snapshot_versions SET version = 1") // the backup's value
	after, err := s.NextVersion(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("after restore NextVersion = %d, had given %d", after, before)
	}
}

// recv waits for the next change on ch.
func recv(t *testing.T, ch <-chan auth.Change) auth.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
	}
	return auth.Change{}
}

func testWatch(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, dsn := open(t, b)
	writer := s
	if b.watchAcross {
		writer = authtest.Open(t, dsn) // another connector
	}
	ch, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.CreateDevice(ctx, device("acme", "pc", auth.DeviceActive)); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, ch); c != (auth.Change{Tenant: "acme", Kind: auth.ChangeDevice}) {
		t.Errorf("after CreateDevice: %+v", c)
	}
	if err := writer.Revoke(ctx, "acme", "pc", "stolen", []auth.RevokedCert{{Serial: "1", NotAfter: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, ch); c != (auth.Change{Tenant: "acme", Kind: auth.ChangeRevocation}) {
		t.Errorf("after Revoke: %+v", c)
	}
	// A failed write announces nothing.
	writer.UpdateDevice(ctx, "acme", "pc", func(*auth.Device) error { return errors.New("no") })
	if _, err := writer.NextVersion(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := writer.CreateDevice(ctx, device("beta", "pc", auth.DeviceActive)); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, ch); c != (auth.Change{Tenant: "beta", Kind: auth.ChangeDevice}) {
		t.Errorf("after a failed update and a new device: %+v", c)
	}
}

// Changes that pile up while nobody receives are merged, not lost.
func testWatchMerge(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	ch, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		tenant := []string{"acme", "beta"}[i%2]
		if err := s.CreateDevice(ctx, device(tenant, fmt.Sprint("pc", i), auth.DeviceActive)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, "acme", "pc0", "lost", nil, t0); err != nil {
		t.Fatal(err)
	}
	want := map[auth.Change]bool{
		{Tenant: "acme", Kind: auth.ChangeDevice}: true, {Tenant: "beta", Kind: auth.ChangeDevice}: true,
		{Tenant: "acme", Kind: auth.ChangeRevocation}: true,
	}
	for len(want) > 0 {
		c := recv(t, ch)
		delete(want, c)
	}
}

func testWatchEnds(t *testing.T, b backend) {
	ctx := ctxT(t)
	dsn := b.newDSN(t)
	s, err := auth.OpenStore(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	byCtx, err := s.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	byClose, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	drain(t, byCtx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, byClose)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Watch(ctx); !errors.Is(err, auth.ErrStoreClosed) {
		t.Errorf("Watch after Close = %v, want ErrStoreClosed", err)
	}
}

// drain waits for ch to close.
func drain(t *testing.T, ch <-chan auth.Change) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel still open after 10s")
		}
	}
}

func testInvalidInput(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	tok, _ := auth.NewToken("acme", nil)
	good := auth.TokenRecord{ID: tok.ID, Tenant: "acme", Hash: tok.Hash(), ExpiresAt: t0, UsesLeft: 1, CreatedAt: t0}
	badTokens := map[string]func(*auth.TokenRecord){
		"no uses":    func(r *auth.TokenRecord) { r.UsesLeft = 0 },
		"bad id":     func(r *auth.TokenRecord) { r.ID = "x" },
		"bad tenant": func(r *auth.TokenRecord) { r.Tenant = "ACME" },
		"no hash":    func(r *auth.TokenRecord) { r.Hash = nil },
		"no expiry":  func(r *auth.TokenRecord) { r.ExpiresAt = time.Time{} },
		"bad group":  func(r *auth.TokenRecord) { r.Groups = []string{""} },
	}
	for name, f := range badTokens {
		r := good
		f(&r)
		if err := s.CreateToken(ctx, r); err == nil {
			t.Errorf("CreateToken accepted a token with %s", name)
		}
	}
	badDevices := map[string]func(*auth.Device){
		"bad id":     func(d *auth.Device) { d.ID = "a/b" },
		"bad status": func(d *auth.Device) { d.Status = "" },
		"bad serial": func(d *auth.Device) { d.CertSerial = "00ff" },
		"no time":    func(d *auth.Device) { d.CreatedAt = time.Time{} },
	}
	for name, f := range badDevices {
		d := device("acme", "pc", auth.DeviceActive)
		f(&d)
		if err := s.CreateDevice(ctx, d); err == nil {
			t.Errorf("CreateDevice accepted a device with %s", name)
		}
	}
	if err := s.Audit(ctx, auth.AuditEvent{Tenant: "acme", Action: auth.AuditEnroll}); err == nil {
		t.Error("Audit accepted an event without a time")
	}
	if _, err := s.NextVersion(ctx, "no_such tenant"); err == nil {
		t.Error("NextVersion accepted an invalid tenant")
	}
}
