package auth_test

import (
	"crypto/sha256"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
)

func device(tenant, id string, status auth.DeviceStatus, groups ...string) auth.Device {
	return auth.Device{
		Tenant: tenant, ID: id, Name: "host-" + id, Status: status, Groups: groups,
		KeySPKI: sha256.Sum256([]byte(id)), TokenID: "aaaqeayeaudaocaj",
		CertSerial: "1f2e3d", CertNotAfter: t0.Add(72 * time.Hour), CreatedAt: t0,
	}
}

// storedDevice is d as the registry gives it back.
func storedDevice(d auth.Device) auth.Device {
	trunc := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.UTC().Truncate(time.Microsecond)
	}
	if d.UpdatedAt.IsZero() {
		d.UpdatedAt = d.CreatedAt
	}
	d.CertNotAfter, d.CreatedAt, d.UpdatedAt = trunc(d.CertNotAfter), trunc(d.CreatedAt), trunc(d.UpdatedAt)
	d.ApprovedAt, d.RevokedAt = trunc(d.ApprovedAt), trunc(d.RevokedAt)
	g := append([]string{}, d.Groups...)
	slices.Sort(g)
	d.Groups = slices.Compact(g)
	return d
}

func ids(ds []auth.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func testDeviceCRUD(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	d := device("acme", "pc-01", auth.DevicePending, "sales", "laptops")
	d.Name = "山田のPC" // any text
	if err := s.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDevice(ctx, d); !errors.Is(err, auth.ErrDeviceExists) {
		t.Errorf("second CreateDevice = %v, want ErrDeviceExists", err)
	}
	// Same id, other tenant: another device.
	if err := s.CreateDevice(ctx, device("other", "pc-01", auth.DeviceActive)); err != nil {
		t.Errorf("same id in another tenant: %v", err)
	}
	got, err := s.GetDevice(ctx, "acme", "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	if want := storedDevice(d); !reflect.DeepEqual(got, want) {
		t.Errorf("GetDevice =\n%+v, want\n%+v", got, want)
	}
	bare := auth.Device{Tenant: "acme", ID: "bare", Status: auth.DeviceActive, CreatedAt: t0}
	if err := s.CreateDevice(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetDevice(ctx, "acme", "bare"); !reflect.DeepEqual(got, storedDevice(bare)) {
		t.Errorf("device with empty fields comes back as\n%+v, want\n%+v", got, storedDevice(bare))
	}
	for _, k := range [][2]string{{"acme", "nope"}, {"third", "pc-01"}} {
		if _, err := s.GetDevice(ctx, k[0], k[1]); !errors.Is(err, auth.ErrDeviceNotFound) {
			t.Errorf("GetDevice(%s, %s) = %v, want ErrDeviceNotFound", k[0], k[1], err)
		}
	}
}

func testDeviceFilters(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	for _, d := range []auth.Device{
		device("acme", "e", auth.DeviceActive, "sales"),
		device("acme", "a", auth.DevicePending, "sales", "laptops"),
		device("acme", "C", auth.DeviceActive),
		device("acme", "b-2", auth.DeviceActive, "laptops"),
		device("acme", "b_1", auth.DevicePending),
		device("other", "a", auth.DeviceActive, "sales"),
	} {
		if err := s.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		filter auth.DeviceFilter
		want   []string
	}{
		{"all, bytewise by id", auth.DeviceFilter{}, []string{"C", "a", "b-2", "b_1", "e"}},
		{"active", auth.DeviceFilter{Status: auth.DeviceActive}, []string{"C", "b-2", "e"}},
		{"pending", auth.DeviceFilter{Status: auth.DevicePending}, []string{"a", "b_1"}},
		{"revoked", auth.DeviceFilter{Status: auth.DeviceRevoked}, nil},
		{"group", auth.DeviceFilter{Group: "laptops"}, []string{"a", "b-2"}},
		{"group and status", auth.DeviceFilter{Group: "sales", Status: auth.DeviceActive}, []string{"e"}},
		{"no such group", auth.DeviceFilter{Group: "sale"}, nil},
		{"first page", auth.DeviceFilter{Limit: 2}, []string{"C", "a"}},
		{"next page", auth.DeviceFilter{AfterID: "a", Limit: 2}, []string{"b-2", "b_1"}},
		{"last page", auth.DeviceFilter{AfterID: "b_1", Limit: 2}, []string{"e"}},
	}
	for _, tt := range tests {
		got, err := s.ListDevices(ctx, "acme", tt.filter)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(ids(got), tt.want) {
			t.Errorf("%s: ListDevices = %q, want %q", tt.name, ids(got), tt.want)
		}
	}
	if got, _ := s.ListDevices(ctx, "other", auth.DeviceFilter{}); !slices.Equal(ids(got), []string{"a"}) {
		t.Errorf("other tenant: %q", ids(got))
	}
}

func testUpdateDevice(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	d := device("acme", "pc", auth.DevicePending, "sales")
	if err := s.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	approved, err := s.UpdateDevice(ctx, "acme", "pc", func(d *auth.Device) error {
		d.Status, d.ApprovedAt, d.UpdatedAt = auth.DeviceActive, t0.Add(time.Hour), t0.Add(time.Hour)
		d.Groups = append(d.Groups, "approved")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetDevice(ctx, "acme", "pc")
	if !reflect.DeepEqual(got, approved) || got.Status != auth.DeviceActive || !slices.Equal(got.Groups, []string{"approved", "sales"}) {
		t.Errorf("after approval: GetDevice =\n%+v, UpdateDevice returned\n%+v", got, approved)
	}

	// A failing f, or one that breaks the rules, writes nothing.
	boom := errors.New("boom")
	bad := []struct {
		name string
		f    func(*auth.Device) error
		want error
	}{
		{"f fails", func(d *auth.Device) error { d.Name = "changed"; return boom }, boom},
		{"tenant change", func(d *auth.Device) error { d.Tenant = "other"; return nil }, nil},
		{"id change", func(d *auth.Device) error { d.ID = "pc2"; return nil }, nil},
		{"revoke by update", func(d *auth.Device) error { d.Status = auth.DeviceRevoked; return nil }, nil},
		{"bad status", func(d *auth.Device) error { d.Status = "lost"; return nil }, nil},
		{"bad group", func(d *auth.Device) error { d.Groups = []string{"Bad Group"}; return nil }, nil},
	}
	for _, tt := range bad {
		_, err := s.UpdateDevice(ctx, "acme", "pc", tt.f)
		if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: UpdateDevice = %v", tt.name, err)
		}
		if now, _ := s.GetDevice(ctx, "acme", "pc"); !reflect.DeepEqual(now, got) {
			t.Errorf("%s: device changed to\n%+v", tt.name, now)
		}
	}
	if _, err := s.UpdateDevice(ctx, "acme", "nope", func(*auth.Device) error { return nil }); !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Errorf("UpdateDevice of a missing device = %v, want ErrDeviceNotFound", err)
	}

	// Revocation is final.
	if err := s.Revoke(ctx, "acme", "pc", "stolen", nil, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateDevice(ctx, "acme", "pc", func(d *auth.Device) error { d.Status = auth.DeviceActive; return nil })
	if err == nil {
		t.Error("UpdateDevice brought a revoked device back")
	}
	if _, err := s.UpdateDevice(ctx, "acme", "pc", func(d *auth.Device) error { d.Name = "evidence"; return nil }); err != nil {
		t.Errorf("renaming a revoked device: %v", err)
	}
}

// Read-modify-writes of one device from 20 goroutines and two stores lose
// no update.
func testUpdateDeviceConcurrent(t *testing.T, b backend) {
	ctx := ctxT(t)
	s1, dsn := open(t, b)
	s2 := authtest.Open(t, dsn)
	d := device("acme", "pc", auth.DeviceActive)
	d.Name = "0"
	if err := s1.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		s := []auth.Store{s1, s2}[i%2]
		wg.Go(func() {
			_, errs[i] = s.UpdateDevice(ctx, "acme", "pc", func(d *auth.Device) error {
				v, err := strconv.Atoi(d.Name)
				d.Name = strconv.Itoa(v + 1)
				return err
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got, _ := s1.GetDevice(ctx, "acme", "pc"); got.Name != strconv.Itoa(n) {
		t.Errorf("counter = %s after %d increments", got.Name, n)
	}
}
