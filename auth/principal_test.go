package auth_test

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/auth"
)

func mustParseURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

func TestDeviceURIRoundTrip(t *testing.T) {
	tests := []struct {
		name, tenant, id string
	}{
		{"simple", "acme", "pc-01"},
		{"single characters", "a", "x"},
		{"digits only", "0", "42"},
		{"hyphenated tenant", "acme-corp-2", "PC_01.office"},
		{"longest tenant", strings.Repeat("t", 63), "pc"},
		{"longest device id", "acme", strings.Repeat("d", 128)},
		{"dots inside", "acme", "a..b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := auth.DeviceURI(tt.tenant, tt.id)
			want := "sekisho://" + tt.tenant + "/device/" + tt.id
			if got := u.String(); got != want {
				t.Fatalf("DeviceURI(%q, %q) = %q, want %q", tt.tenant, tt.id, got, want)
			}
			// As a certificate carries it: text, parsed again.
			tenant, id, err := auth.ParseDeviceURI(mustParseURL(t, u.String()))
			if err != nil {
				t.Fatalf("ParseDeviceURI(%q): %v", u, err)
			}
			if tenant != tt.tenant || id != tt.id {
				t.Errorf("ParseDeviceURI(%q) = %q, %q; want %q, %q", u, tenant, id, tt.tenant, tt.id)
			}
		})
	}
}

func TestParseDeviceURIRefuses(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		// want is a fragment of the error text, to check that the right
		// rule refused the URI (not a test of the exact wording).
		want string
	}{
		{"wrong scheme", "https://acme/device/pc", "scheme"},
		{"spiffe scheme", "spiffe://acme/device/pc", "scheme"},
		{"user info", "sekisho://user@acme/device/pc", "user"},
		{"user and password", "sekisho://user:pw@acme/device/pc", "user"},
		{"port", "sekisho://acme:443/device/pc", "port"},
		{"escaped device", "sekisho://acme/device/%70c", "canonical"},
		{"empty query", "sekisho://acme/device/pc?", "canonical"},
		{"query", "sekisho://acme/device/pc?x=1", "query"},
		{"fragment", "sekisho://acme/device/pc#frag", "fragment"},
		{"no path", "sekisho://acme", "path"},
		{"path without device", "sekisho://acme/pc", "path"},
		{"plural devices", "sekisho://acme/devices/pc", "path"},
		{"device without slash", "sekisho://acme/device", "path"},
		{"opaque", "sekisho:acme/device/pc", "path"},
		{"tenant uppercase", "sekisho://Acme/device/pc", "tenant"},
		{"tenant leading hyphen", "sekisho://-acme/device/pc", "tenant"},
		{"tenant trailing hyphen", "sekisho://acme-/device/pc", "tenant"},
		{"tenant too long", "sekisho://" + strings.Repeat("t", 64) + "/device/pc", "tenant"},
		{"tenant empty", "sekisho:///device/pc", "tenant"},
		{"tenant underscore", "sekisho://ac_me/device/pc", "tenant"},
		{"tenant with empty port", "sekisho://acme:/device/pc", "tenant"},
		{"device id empty", "sekisho://acme/device/", "device id"},
		{"device id too long", "sekisho://acme/device/" + strings.Repeat("d", 129), "device id"},
		{"device id with slash", "sekisho://acme/device/pc/x", "device id"},
		{"device id with escaped slash", "sekisho://acme/device/pc%2Fx", "device id"},
		{"device id with space", "sekisho://acme/device/pc%20x", "device id"},
		{"device id unicode", "sekisho://acme/device/p%C3%A9", "device id"},
		{"device id colon", "sekisho://acme/device/pc:1", "device id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant, id, err := auth.ParseDeviceURI(mustParseURL(t, tt.uri))
			if err == nil {
				t.Fatalf("ParseDeviceURI(%q) = %q, %q; want an error", tt.uri, tenant, id)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseDeviceURI(%q) error %q does not mention %q", tt.uri, err, tt.want)
			}
			if tenant != "" || id != "" {
				t.Errorf("ParseDeviceURI(%q) returned %q, %q with its error", tt.uri, tenant, id)
			}
		})
	}
}

func TestValidNames(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		in    string
		ok    bool
	}{
		{"tenant ok", auth.ValidTenant, "acme-2", true},
		{"tenant 63", auth.ValidTenant, strings.Repeat("a", 63), true},
		{"tenant 64", auth.ValidTenant, strings.Repeat("a", 64), false},
		{"tenant empty", auth.ValidTenant, "", false},
		{"tenant dot", auth.ValidTenant, "acme.corp", false},
		{"tenant unicode", auth.ValidTenant, "äcme", false},
		{"service ok", auth.ValidService, "ssh", true},
		{"service uppercase", auth.ValidService, "SSH", false},
		{"service hyphen end", auth.ValidService, "ssh-", false},
		{"device ok", auth.ValidDeviceID, "PC-01_a.b", true},
		{"device 128", auth.ValidDeviceID, strings.Repeat("d", 128), true},
		{"device 129", auth.ValidDeviceID, strings.Repeat("d", 129), false},
		{"device empty", auth.ValidDeviceID, "", false},
		{"device space", auth.ValidDeviceID, "pc 1", false},
		{"device dot", auth.ValidDeviceID, ".", false},
		{"device dotdot", auth.ValidDeviceID, "..", false},
		{"device slash", auth.ValidDeviceID, "pc/1", false},
		{"device NUL", auth.ValidDeviceID, "pc\x00", false},
		{"device unicode", auth.ValidDeviceID, "pé", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(tt.in)
			if (err == nil) != tt.ok {
				t.Errorf("check(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestPrincipalOf(t *testing.T) {
	raw := []byte("not really DER, but PrincipalOf only hashes it")
	dev := func(tenant, id string) *url.URL { return auth.DeviceURI(tenant, id) }
	other := mustParseURL(t, "https://acme.example/device/pc")
	spiffe := mustParseURL(t, "spiffe://acme/device/pc")
	tests := []struct {
		name    string
		uris    []*url.URL
		want    auth.Principal // tenant and device; CertSHA256 checked apart
		wantErr error          // nil: success; errAny: any error
	}{
		{"one sekisho URI", []*url.URL{dev("acme", "pc-1")}, auth.Principal{Tenant: "acme", DeviceID: "pc-1"}, nil},
		{"other schemes ignored", []*url.URL{other, dev("acme", "pc-1"), spiffe}, auth.Principal{Tenant: "acme", DeviceID: "pc-1"}, nil},
		{"no URI", nil, auth.Principal{}, auth.ErrNoIdentity},
		{"only other schemes", []*url.URL{other, spiffe}, auth.Principal{}, auth.ErrNoIdentity},
		{"two sekisho URIs", []*url.URL{dev("acme", "pc-1"), dev("acme", "pc-2")}, auth.Principal{}, errAny},
		{"same sekisho URI twice", []*url.URL{dev("acme", "pc-1"), dev("acme", "pc-1")}, auth.Principal{}, errAny},
		{"two tenants", []*url.URL{dev("acme", "pc-1"), dev("evil", "pc-1")}, auth.Principal{}, errAny},
		{"malformed sekisho URI", []*url.URL{mustParseURL(t, "sekisho://acme/devices/pc-1")}, auth.Principal{}, errAny},
		{"good then malformed", []*url.URL{dev("acme", "pc-1"), mustParseURL(t, "sekisho://Acme/device/pc-1")}, auth.Principal{}, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{Raw: raw, URIs: tt.uris}
			p, err := auth.PrincipalOf(cert)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("PrincipalOf: %v", err)
			case tt.wantErr == nil:
			case err == nil:
				t.Fatalf("PrincipalOf = %+v, want an error", p)
			case tt.wantErr == errAny && errors.Is(err, auth.ErrNoIdentity):
				t.Fatalf("PrincipalOf error = %v; want an error other than ErrNoIdentity", err)
			case tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("PrincipalOf error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if p != (auth.Principal{}) {
					t.Errorf("PrincipalOf returned %+v with its error", p)
				}
				if tn, terr := auth.TenantOf(cert); terr == nil || tn != "" {
					t.Errorf("TenantOf = %q, %v; want the error of PrincipalOf", tn, terr)
				}
				return
			}
			if p.Tenant != tt.want.Tenant || p.DeviceID != tt.want.DeviceID {
				t.Errorf("PrincipalOf = %q/%q, want %q/%q", p.Tenant, p.DeviceID, tt.want.Tenant, tt.want.DeviceID)
			}
			if p.CertSHA256 != sha256.Sum256(raw) {
				t.Errorf("CertSHA256 = %x, want sha256(cert.Raw) = %x", p.CertSHA256, sha256.Sum256(raw))
			}
			if tn, err := auth.TenantOf(cert); err != nil || tn != tt.want.Tenant {
				t.Errorf("TenantOf = %q, %v; want %q", tn, err, tt.want.Tenant)
			}
		})
	}
}

// errAny in a table means "some error, but not the sentinel of the
// no-identity case".
var errAny = errors.New("any error")

func FuzzParseDeviceURI(f *testing.F) {
	for _, s := range []string{
		"sekisho://acme/device/pc-1",
		"sekisho://a/device/..",
		"sekisho://acme/device/pc%2Fx",
		"sekisho://acme/device/%70c",
		"sekisho://acme/device/pc?",
		"sekisho://u@acme:1/device/pc?q#f",
		"SEKISHO://acme/device/pc",
		"sekisho:acme/device/pc",
		"sekisho:///device/",
		"https://acme/device/pc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		tenant, id, err := auth.ParseDeviceURI(u)
		if err != nil {
			return
		}
		if err := auth.ValidTenant(tenant); err != nil {
			t.Fatalf("ParseDeviceURI(%q) accepted tenant %q: %v", s, tenant, err)
		}
		if err := auth.ValidDeviceID(id); err != nil {
			t.Fatalf("ParseDeviceURI(%q) accepted device id %q: %v", s, id, err)
		}
		canon := auth.DeviceURI(tenant, id).String()
		if want := "sekisho://" + tenant + "/device/" + id; canon != want {
			t.Fatalf("DeviceURI(%q, %q) = %q, want %q", tenant, id, canon, want)
		}
		u2, err := url.Parse(canon)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", canon, err)
		}
		t2, id2, err := auth.ParseDeviceURI(u2)
		if err != nil || t2 != tenant || id2 != id {
			t.Fatalf("round trip of %q via %q = %q, %q, %v", s, canon, t2, id2, err)
		}
	})
}

// FuzzDeviceURI checks the other direction: every valid tenant and device
// id pair survives DeviceURI, its text form, and ParseDeviceURI.
func FuzzDeviceURI(f *testing.F) {
	f.Add("acme", "pc-1")
	f.Add("a", "..")
	f.Add("a-b", "A_b.C")
	f.Fuzz(func(t *testing.T, tenant, id string) {
		if auth.ValidTenant(tenant) != nil || auth.ValidDeviceID(id) != nil {
			return
		}
		s := auth.DeviceURI(tenant, id).String()
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", s, err)
		}
		t2, id2, err := auth.ParseDeviceURI(u)
		if err != nil || t2 != tenant || id2 != id {
			t.Fatalf("ParseDeviceURI(%q) = %q, %q, %v; want %q, %q", s, t2, id2, err, tenant, id)
		}
	})
}
