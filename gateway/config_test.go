package gateway

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/internal/config"
)

func TestConfigValidate(t *testing.T) {
	_, pinA := certstest.Connector(t)
	_, pinB := certstest.Connector(t)
	srv := certstest.NewServer(t)
	valid := func() Config {
		return Config{
			Certificate: &srv.Cert,
			Tenants: []TenantConfig{
				{Name: "acme", ConnectorPins: []auth.Pin{pinA}},
				{Name: "beta", ConnectorPins: []auth.Pin{pinB}},
			},
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // the one field path expected; "" for a valid config
	}{
		{"valid", func(*Config) {}, ""},
		{"valid from files", func(c *Config) {
			c.Certificate = nil
			c.TLS.CertFile, c.TLS.KeyFile = "gw.crt", "gw.key"
		}, ""},
		{"valid curves", func(c *Config) { c.TLS.Curves = []string{"X25519", "p-256", "X25519MLKEM768"} }, ""},
		{"same pin listed twice in one tenant", func(c *Config) {
			c.Tenants[0].ConnectorPins = []auth.Pin{pinA, pinA}
		}, ""},
		{"missing tls", func(c *Config) { c.Certificate = nil }, "tls"},
		{"cert file without key file", func(c *Config) {
			c.Certificate = nil
			c.TLS.CertFile = "gw.crt"
		}, "tls"},
		{"no tenants", func(c *Config) { c.Tenants = nil }, "tenants"},
		{"bad tenant name", func(c *Config) { c.Tenants[1].Name = "Beta_Corp" }, "tenants[1].name"},
		{"empty tenant name", func(c *Config) { c.Tenants[0].Name = "" }, "tenants[0].name"},
		{"duplicate tenant", func(c *Config) { c.Tenants[1].Name = "acme" }, "tenants[1].name"},
		{"no pins", func(c *Config) { c.Tenants[1].ConnectorPins = nil }, "tenants[1].connector_pins"},
		{"pin shared by two tenants", func(c *Config) {
			c.Tenants[1].ConnectorPins = []auth.Pin{pinB, pinA}
		}, "tenants[1].connector_pins[1]"},
		{"bad curve", func(c *Config) { c.TLS.Curves = []string{"X25519", "secp256k1"} }, "tls.curves"},
		{"bad tunnel", func(c *Config) { c.Tunnel.StreamWindow = 1024 }, "tunnel"},
	}
	negatives := []struct {
		field string
		set   func(*Limits)
	}{
		{"handshake_timeout", func(l *Limits) { l.HandshakeTimeout = -time.Second }},
		{"max_handshakes", func(l *Limits) { l.MaxHandshakes = -1 }},
		{"read_header_timeout", func(l *Limits) { l.ReadHeaderTimeout = -1 }},
		{"max_header_bytes", func(l *Limits) { l.MaxHeaderBytes = -1 }},
		{"idle_timeout", func(l *Limits) { l.IdleTimeout = -1 }},
		{"max_requests_per_device", func(l *Limits) { l.MaxRequestsPerDevice = -1 }},
		{"stream_timeout", func(l *Limits) { l.StreamTimeout = -1 }},
		{"response_header_timeout", func(l *Limits) { l.ResponseHeaderTimeout = -1 }},
		{"idle_stream_timeout", func(l *Limits) { l.IdleStreamTimeout = -1 }},
		{"max_idle_streams", func(l *Limits) { l.MaxIdleStreams = -1 }},
	}
	for _, n := range negatives {
		tests = append(tests, struct {
			name string
			mod  func(*Config)
			want string
		}{"negative " + n.field, func(c *Config) { n.set(&c.Limits) }, "limits." + n.field})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mod(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *config.FieldError", err)
			}
			if fe.Path != tt.want {
				t.Errorf("field path = %q, want %q (error: %v)", fe.Path, tt.want, err)
			}
			if got := config.FieldPaths(err); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("all field paths = %q, want just %q", got, tt.want)
			}
		})
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	_, pin := certstest.Connector(t)
	cfg := Config{
		TLS:     TLSConfig{Curves: []string{"nope"}},
		Tenants: []TenantConfig{{Name: "ok", ConnectorPins: []auth.Pin{pin}}, {Name: "-bad"}},
		Limits:  Limits{IdleTimeout: -1},
	}
	want := []string{"tls", "tls.curves", "tenants[1].name", "tenants[1].connector_pins", "limits.idle_timeout"}
	if got := config.FieldPaths(cfg.Validate()); !slices.Equal(got, want) {
		t.Errorf("field paths = %q, want %q", got, want)
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	s, err := New(Config{})
	if err == nil {
		s.Close()
		t.Fatal("New accepted an empty config")
	}
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("New = %v, want a *config.FieldError", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"ID", c.ID, "gateway"},
		{"Listen", c.Listen, ":443"},
		{"RetryAfter", c.RetryAfter, 5 * time.Second},
		{"HandshakeTimeout", c.Limits.HandshakeTimeout, 10 * time.Second},
		{"MaxHandshakes", c.Limits.MaxHandshakes, 1024},
		{"MaxHeaderBytes", c.Limits.MaxHeaderBytes, 64 << 10},
		{"MaxRequestsPerDevice", c.Limits.MaxRequestsPerDevice, 32},
		{"IdleStreamTimeout", c.Limits.IdleStreamTimeout, 30 * time.Second},
		{"MaxIdleStreams", c.Limits.MaxIdleStreams, 256},
	} {
		if d.got != d.want {
			t.Errorf("%s = %v, want %v", d.name, d.got, d.want)
		}
	}
	if c.Logger == nil || c.Now == nil {
		t.Error("Logger and Now must default to non-nil")
	}
}
