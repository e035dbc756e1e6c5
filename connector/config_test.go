package connector_test

import (
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/internal/config"
)

func TestConfigValidate(t *testing.T) {
	cert, pin := certstest.Connector(t)
	ca := certstest.CA(t, "acme")
	valid := func() connector.Config {
		return connector.Config{
			Tenant:      "acme",
			Certificate: &cert,
			Gateways:    []connector.GatewayConfig{{Address: "gw.example:443"}},
			TrustBundle: []*x509.Certificate{ca.Cert},
			Services: []connector.ServiceConfig{
				{Name: "core", PathPrefix: "/", Address: "10.0.0.1:8080"},
				{Name: "web", Host: "web.example", Address: "web.lan:443", TLS: &connector.ServiceTLS{Pin: &pin}},
			},
		}
	}
	tests := []struct {
		name string
		mod  func(*connector.Config)
		want string // the one field path expected; "" for a valid config
	}{
		{"valid", func(*connector.Config) {}, ""},
		{"key file instead of certificate", func(c *connector.Config) { c.Certificate, c.KeyFile = nil, "conn.key" }, ""},
		{"CA files instead of bundle", func(c *connector.Config) {
			c.TrustBundle, c.AgentCA.CertFiles = nil, []string{"ca.pem"}
		}, ""},
		{"64 sessions", func(c *connector.Config) { c.SessionsPerGateway = 64 }, ""},
		{"backoff max only", func(c *connector.Config) { c.Backoff.Max = time.Second }, ""},
		{"no tenant", func(c *connector.Config) { c.Tenant = "" }, "tenant"},
		{"bad tenant", func(c *connector.Config) { c.Tenant = "ACME" }, "tenant"},
		{"no key", func(c *connector.Config) { c.Certificate = nil }, "key_file"},
		{"no gateways", func(c *connector.Config) { c.Gateways = nil }, "gateways"},
		{"gateway without port", func(c *connector.Config) {
			c.Gateways = append(c.Gateways, connector.GatewayConfig{Address: "gw2.example"})
		}, "gateways[1].address"},
		{"gateway without address", func(c *connector.Config) { c.Gateways[0].Address = "" }, "gateways[0].address"},
		{"negative sessions", func(c *connector.Config) { c.SessionsPerGateway = -1 }, "sessions_per_gateway"},
		{"too many sessions", func(c *connector.Config) { c.SessionsPerGateway = 65 }, "sessions_per_gateway"},
		{"no agent CA", func(c *connector.Config) { c.TrustBundle = nil }, "agent_ca.cert_files"},
		{"no services", func(c *connector.Config) { c.Services = nil }, "services"},
		{"bad service name", func(c *connector.Config) { c.Services[1].Name = "Web Site" }, "services[1].name"},
		{"empty service name", func(c *connector.Config) { c.Services[0].Name = "" }, "services[0].name"},
		{"duplicate service", func(c *connector.Config) { c.Services[1].Name = "core" }, "services[1].name"},
		{"neither host nor prefix", func(c *connector.Config) { c.Services[0].PathPrefix = "" }, "services[0]"},
		{"prefix without slash", func(c *connector.Config) { c.Services[0].PathPrefix = "api" }, "services[0].path_prefix"},
		{"service without port", func(c *connector.Config) { c.Services[1].Address = "web.lan" }, "services[1].address"},
		{"service without address", func(c *connector.Config) { c.Services[0].Address = "" }, "services[0].address"},
		{"service CA file and pin", func(c *connector.Config) { c.Services[1].TLS.CAFile = "core-ca.pem" }, "services[1].tls"},
		{"bad tunnel", func(c *connector.Config) { c.Tunnel.KeepAliveInterval = -time.Second }, "tunnel"},
		{"backoff min above max", func(c *connector.Config) {
			c.Backoff = connector.BackoffConfig{Min: time.Second, Max: time.Millisecond}
		}, "backoff"},
		{"negative backoff", func(c *connector.Config) { c.Backoff.Min = -time.Second }, "backoff"},
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
	cfg := connector.Config{
		Services: []connector.ServiceConfig{{Name: "ok", PathPrefix: "/", Address: "a:1"}, {Name: "b", Address: "x"}},
	}
	want := []string{"tenant", "key_file", "gateways", "agent_ca.cert_files", "services[1]", "services[1].address"}
	if got := config.FieldPaths(cfg.Validate()); !slices.Equal(got, want) {
		t.Errorf("field paths = %q, want %q", got, want)
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	_, err := connector.New(connector.Config{Tenant: "acme"})
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("New = %v, want a *config.FieldError", err)
	}
}

func TestNewLoadsKeyFile(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: "127.0.0.1:1"})
	cfg.Certificate, cfg.KeyFile = nil, t.TempDir()+"/connector.key"
	first, err := connector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := connector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Pin() != again.Pin() {
		t.Errorf("the key created on first start was not reused: pins %s and %s", first.Pin(), again.Pin())
	}
	if first.Pin() == (auth.Pin{}) {
		t.Error("zero pin")
	}
}

func TestConfigValidateTimeouts(t *testing.T) {
	cert, _ := certstest.Connector(t)
	ca := certstest.CA(t, "acme")
	for _, tt := range []struct {
		field string
		set   func(*connector.Timeouts)
	}{
		{"timeouts.handshake", func(to *connector.Timeouts) { to.Handshake = -time.Second }},
		{"timeouts.stream_header", func(to *connector.Timeouts) { to.StreamHeader = -time.Second }},
		{"timeouts.dial", func(to *connector.Timeouts) { to.Dial = -time.Second }},
		{"timeouts.stream_idle", func(to *connector.Timeouts) { to.StreamIdle = -time.Second }},
	} {
		t.Run(tt.field, func(t *testing.T) {
			cfg := connector.Config{
				Tenant: "acme", Certificate: &cert,
				Gateways:    []connector.GatewayConfig{{Address: "gw.example:443"}},
				TrustBundle: []*x509.Certificate{ca.Cert},
				Services:    []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: "10.0.0.1:80"}},
			}
			tt.set(&cfg.Timeouts)
			if got := config.FieldPaths(cfg.Validate()); !slices.Equal(got, []string{tt.field}) {
				t.Errorf("field paths = %q, want [%q]", got, tt.field)
			}
		})
	}
}
