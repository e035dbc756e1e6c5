package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/config"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{
			Gateways: []GatewayConfig{{Address: "gw1.example:443"}, {Address: "gw2.example:443"}},
			Forwards: []Forward{{Listen: "127.0.0.1:5900", Service: "vnc"}},
			HTTPProxy: HTTPProxyConfig{Listen: "127.0.0.1:3128",
				ConnectServices: map[string]string{"core.example:443": "core"}},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		path   string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"zero value but gateways", func(c *Config) { *c = Config{Gateways: c.Gateways} }, ""},
		{"no gateway", func(c *Config) { c.Gateways = nil }, "gateways"},
		{"gateway without port", func(c *Config) { c.Gateways[1].Address = "gw2.example" }, "gateways[1].address"},
		{"renew_at 1", func(c *Config) { c.RenewAt = 1 }, "renew_at"},
		{"negative retry", func(c *Config) { c.RetryMin = -time.Second }, "retry_min"},
		{"retry_min over retry_max", func(c *Config) { c.RetryMin, c.RetryMax = time.Hour, time.Minute }, "retry_min"},
		{"negative idle", func(c *Config) { c.IdleTimeout = -1 }, "idle_timeout"},
		{"negative max_conns", func(c *Config) { c.MaxConns = -1 }, "max_conns"},
		{"forward without listen", func(c *Config) { c.Forwards[0].Listen = "" }, "forwards[0].listen"},
		{"forward to a bad service", func(c *Config) { c.Forwards[0].Service = "VNC!" }, "forwards[0].service"},
		{"forward on the LAN", func(c *Config) { c.Forwards[0].Listen = "0.0.0.0:5900" }, "forwards[0].listen"},
		{"proxy on the LAN", func(c *Config) { c.HTTPProxy.Listen = "192.168.1.2:3128" }, "http_proxy.listen"},
		{"proxy on the LAN, allowed", func(c *Config) { c.HTTPProxy.Listen, c.HTTPProxy.AllowRemote = "192.168.1.2:3128", true }, ""},
		{"same listen twice", func(c *Config) { c.HTTPProxy.Listen = c.Forwards[0].Listen }, "http_proxy.listen"},
		{"connect key without port", func(c *Config) { c.HTTPProxy.ConnectServices = map[string]string{"core.example": "core"} }, `http_proxy.connect_services["core.example"]`},
		{"connect to a bad service", func(c *Config) { c.HTTPProxy.ConnectServices["x.example:1"] = "" }, `http_proxy.connect_services["x.example:1"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if paths := config.FieldPaths(err); !slices.Contains(paths, tc.path) {
				t.Fatalf("Validate = %v (paths %q), want a problem at %s", err, paths, tc.path)
			}
		})
	}
}

func TestConfigDecode(t *testing.T) {
	const doc = `
gateways:
  - address: gw1.example:443
    ca_file: gateway-ca.pem
  - address: gw2.example:443
    server_name: gw.example
state_dir: /var/lib/sekisho-agent
renew_at: 0.5
retry_min: 10s
forwards:
  - listen: 127.0.0.1:5900
    service: vnc
http_proxy:
  listen: 127.0.0.1:3128
  connect_services:
    core.example:443: core
idle_timeout: 30m
`
	var cfg Config
	if err := config.Decode("agent.yaml", []byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Gateways) != 2 || cfg.Gateways[1].ServerName != "gw.example" || cfg.RenewAt != 0.5 ||
		cfg.RetryMin != 10*time.Second || cfg.Forwards[0].Service != "vnc" ||
		cfg.HTTPProxy.ConnectServices["core.example:443"] != "core" || cfg.IdleTimeout != 30*time.Minute {
		t.Fatalf("decoded %+v", cfg)
	}

	err := config.Decode("agent.yaml", []byte("gateways: [{address: gw:443}]\nforwards:\n  - listen: 0.0.0.0:5900\n    service: vnc\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "agent.yaml:3: forwards[0].listen") || !errors.Is(err, errNotLoopback) {
		t.Fatalf("err = %v, want agent.yaml:3: forwards[0].listen: not a loopback address", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.StateDir != DefaultStateDir() || c.RenewAt != DefaultRenewAt || c.RetryMin != DefaultRetryMin ||
		c.RetryMax != DefaultRetryMax || c.MaxConns != DefaultMaxConns || c.IdleTimeout != DefaultIdleTimeout ||
		c.DialTimeout != DefaultDialTimeout || c.Logger == nil || c.Now == nil || c.After == nil || c.DialContext == nil {
		t.Fatalf("defaults %+v", c)
	}
	if c := (Config{RetryMin: time.Hour}).withDefaults(); c.RetryMax != time.Hour {
		t.Fatalf("retry_max %v, want retry_min's hour", c.RetryMax)
	}
}
