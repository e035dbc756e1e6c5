package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/tunnel"
)

// Config configures a connector. The zero value of every field means the
// default written in its comment.
type Config struct {
	// ID names this connector in logs and in its hello. Default "connector".
	ID string `yaml:"id"`
	// Tenant is the tenant this connector speaks for.
	Tenant string `yaml:"tenant"`
	// KeyFile holds the connector's private key; the gateways pin its SPKI
	// hash. It is created (owner-only) when missing, and its pin logged.
	KeyFile string `yaml:"key_file"`
	// Gateways to dial. At least one.
	Gateways []GatewayConfig `yaml:"gateways"`
	// SessionsPerGateway is how many parallel sessions to keep to each
	// gateway. Default 2.
	SessionsPerGateway int `yaml:"sessions_per_gateway"`
	// Transport is tcp (yamux over TLS), quic, or auto (QUIC, falling back
	// to TCP while UDP is blocked, and back to QUIC when it returns).
	// Default tcp: see docs/BENCHMARKS.md for why.
	Transport string `yaml:"transport"`
	// QUICRetry is how often auto mode, while on TCP, tries QUIC again.
	// Default 30s.
	QUICRetry time.Duration `yaml:"quic_retry"`
	// QUICTimeout bounds an auto-mode QUIC attempt before falling back to
	// TCP. Default 3s.
	QUICTimeout time.Duration `yaml:"quic_timeout"`
	// AgentCA lists the tenant's agent CA certificates, pushed to the
	// gateways as the trust bundle.
	AgentCA AgentCA `yaml:"agent_ca"`
	// Services the gateways may relay to. At least one.
	Services []ServiceConfig `yaml:"services"`
	// Registry is the device registry: a SQLite file, or a postgres://
	// URL that several connectors of the tenant share. Without one the
	// connector serves, but enrolls no device and pushes no revocation.
	DeviceRegistry string `yaml:"registry"`
	// CA signs agent certificates at enrollment and renewal; it stays on
	// the LAN side. Its certificate is added to the pushed trust bundle.
	CA CAConfig `yaml:"ca"`
	// Enrollment tunes the device lifecycle.
	Enrollment EnrollmentConfig `yaml:"enrollment"`
	// Payloads is the payload catalog and the relay budget.
	Payloads PayloadsConfig `yaml:"payloads"`
	// Tunnel tunes the sessions.
	Tunnel tunnel.Config `yaml:"tunnel"`
	// Timeouts bound each step with a peer.
	Timeouts Timeouts `yaml:"timeouts"`
	// Backoff spaces out reconnects. Defaults 250ms to 30s.
	Backoff BackoffConfig `yaml:"backoff"`
	// Admin is the admin listener (metrics, health, status page). In
	// config files it defaults to 127.0.0.1:9181; in the Go API an empty
	// listen address means none.
	Admin admin.Config `yaml:"admin"`

	// Certificate, when set, is the connector's identity instead of KeyFile.
	Certificate *tls.Certificate `yaml:"-"`
	// TrustBundle, when set, replaces the certificates of AgentCA.
	TrustBundle []*x509.Certificate `yaml:"-"`
	// Dialer dials gateways and services. Default a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error) `yaml:"-"`
	// Logger receives the connector's logs. Default: none.
	Logger *zap.Logger `yaml:"-"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Rand drives backoff jitter (values in [0, 1)). Default math/rand.
	Rand func() float64 `yaml:"-"`
	// Store, when set, is the registry instead of Registry.
	Store auth.Store `yaml:"-"`
	// SigningCA, when set, signs instead of CA's files.
	SigningCA *certs.CA `yaml:"-"`
	// Registry receives the metrics. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry `yaml:"-"`
	// ReloadSource, when set, gives the admin API's reload action a new
	// config (the command re-reads the file).
	ReloadSource func() (Config, error) `yaml:"-"`
}

// GatewayConfig is one gateway to dial.
type GatewayConfig struct {
	// Address is host:port of the gateway's TCP port.
	Address string `yaml:"address"`
	// ServerName is the name checked in the gateway's certificate. Default
	// the host of Address.
	ServerName string `yaml:"server_name"`
	// QUICAddress is host:port of the gateway's QUIC tunnel port (UDP).
	// Default the host of Address with port 4443.
	QUICAddress string `yaml:"quic_address"`
	// CAFile pins the CA that must have issued the gateway's certificate.
	// Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// RootCAs, when set, replaces CAFile.
	RootCAs *x509.CertPool `yaml:"-"`
}

// CAConfig is the CA that signs agent certificates.
type CAConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// EnrollmentConfig tunes the device lifecycle.
type EnrollmentConfig struct {
	// AgentLifetime is how long agent certificates are valid. Default 168h.
	AgentLifetime time.Duration `yaml:"agent_lifetime"`
	// RenewGrace is how long after expiry a certificate can still renew
	// (a PC that was off over a holiday). Default 720h.
	RenewGrace time.Duration `yaml:"renew_grace"`
	// PollAfter is what pending devices are told to wait before asking
	// again. Default 10s.
	PollAfter time.Duration `yaml:"poll_after"`
}

// AgentCA names the tenant's agent CA certificates.
type AgentCA struct {
	// CertFiles are PEM files of CA certificates (several during a CA
	// rollover).
	CertFiles []string `yaml:"cert_files"`
}

// ServiceConfig is one internal service.
type ServiceConfig struct {
	// Name names the service in routes and stream headers.
	Name string `yaml:"name"`
	// Host routes agent requests whose Host matches.
	Host string `yaml:"host"`
	// PathPrefix routes agent requests whose path starts with it (whole
	// segments).
	PathPrefix string `yaml:"path_prefix"`
	// HostRewrite replaces the Host header toward the service.
	HostRewrite string `yaml:"host_rewrite"`
	// Address is host:port the connector dials.
	Address string `yaml:"address"`
	// TLS, when present, makes the connector speak TLS to the service.
	TLS *ServiceTLS `yaml:"tls"`
	// Connect makes this a raw TCP service (remote control and the like):
	// agents reach it with CONNECT naming the service; host, path_prefix
	// and host_rewrite do not apply.
	Connect bool `yaml:"connect"`
	// Groups, for a CONNECT service, lists the device groups allowed to use
	// it; empty allows every device of the tenant.
	Groups []string `yaml:"groups"`
	// ProxyProtocol sends a PROXY v2 header first on CONNECT streams, so
	// the service learns the device behind it (its address, and its tenant,
	// device id and certificate digest in TLVs 0xE0-0xE2).
	ProxyProtocol bool `yaml:"proxy_protocol"`
}

// ServiceTLS says how to verify a service that speaks TLS. With neither
// CAFile nor Pin, the system roots are used.
type ServiceTLS struct {
	// CAFile is the PEM CA that issued the service's certificate.
	CAFile string `yaml:"ca_file"`
	// Pin is the SPKI pin of the service's key (instead of a CA).
	Pin *auth.Pin `yaml:"pin"`
	// ServerName is the name to check. Default the host of Address.
	ServerName string `yaml:"server_name"`
	// RootCAs, when set, replaces CAFile.
	RootCAs *x509.CertPool `yaml:"-"`
}

// Timeouts bound the steps of serving a stream.
type Timeouts struct {
	// Handshake bounds dialing a gateway and its hello. Default 10s.
	Handshake time.Duration `yaml:"handshake"`
	// StreamHeader bounds reading a stream's header. Default 10s.
	StreamHeader time.Duration `yaml:"stream_header"`
	// Dial bounds connecting to a service (TLS included). Default 10s.
	Dial time.Duration `yaml:"dial"`
	// StreamIdle closes a relayed stream when nothing moved for that long.
	// Default 5m.
	StreamIdle time.Duration `yaml:"stream_idle"`
}

// BackoffConfig spaces out reconnects.
type BackoffConfig struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.ID == "" {
		c.ID = "connector"
	}
	if c.SessionsPerGateway == 0 {
		c.SessionsPerGateway = 2
	}
	if c.Transport == "" {
		c.Transport = TransportTCP
	}
	def(&c.QUICRetry, 30*time.Second)
	def(&c.Enrollment.AgentLifetime, certs.DefaultAgentLifetime)
	def(&c.Enrollment.RenewGrace, 30*24*time.Hour)
	def(&c.Enrollment.PollAfter, 10*time.Second)
	def(&c.QUICTimeout, 3*time.Second)
	def(&c.Timeouts.Handshake, 10*time.Second)
	def(&c.Timeouts.StreamHeader, 10*time.Second)
	def(&c.Timeouts.Dial, 10*time.Second)
	def(&c.Timeouts.StreamIdle, 5*time.Minute)
	c.Tunnel = c.Tunnel.WithDefaults()
	c.Payloads = c.Payloads.withDefaults()
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Dialer == nil {
		c.Dialer = (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext
	}
	return c
}

// Validate checks c and names the field of each problem.
func (c *Config) Validate() error {
	var errs []error
	if c.Tenant == "" {
		errs = append(errs, config.Fieldf("tenant", "required"))
	} else if err := auth.ValidTenant(c.Tenant); err != nil {
		errs = append(errs, config.Field("tenant", err))
	}
	if c.KeyFile == "" && c.Certificate == nil {
		errs = append(errs, config.Fieldf("key_file", "required"))
	}
	if len(c.Gateways) == 0 {
		errs = append(errs, config.Fieldf("gateways", "at least one gateway is required"))
	}
	for i, g := range c.Gateways {
		if g.Address == "" {
			errs = append(errs, config.Fieldf(config.Key(config.Index("gateways", i), "address"), "required"))
		} else if _, _, err := net.SplitHostPort(g.Address); err != nil {
			errs = append(errs, config.Fieldf(config.Key(config.Index("gateways", i), "address"), "want host:port: %v", err))
		}
	}
	switch c.Transport {
	case "", TransportTCP, TransportQUIC, TransportAuto:
	default:
		errs = append(errs, config.Fieldf("transport", "want tcp, quic or auto, got %q", c.Transport))
	}
	if c.QUICRetry < 0 || c.QUICTimeout < 0 {
		errs = append(errs, config.Fieldf("quic_retry", "quic_retry and quic_timeout must not be negative"))
	}
	if c.SessionsPerGateway < 0 || c.SessionsPerGateway > 64 {
		errs = append(errs, config.Fieldf("sessions_per_gateway", "want 1 to 64"))
	}
	if len(c.AgentCA.CertFiles) == 0 && len(c.TrustBundle) == 0 && c.CA.CertFile == "" && c.SigningCA == nil {
		errs = append(errs, config.Fieldf("agent_ca.cert_files", "at least one CA certificate file is required (or ca)"))
	}
	if (c.CA.CertFile == "") != (c.CA.KeyFile == "") {
		errs = append(errs, config.Fieldf("ca", "cert_file and key_file go together"))
	}
	if c.Enrollment.AgentLifetime < 0 || c.Enrollment.RenewGrace < 0 || c.Enrollment.PollAfter < 0 {
		errs = append(errs, config.Fieldf("enrollment", "durations must not be negative"))
	}
	errs = append(errs, validateServices(c.Services)...)
	errs = append(errs, c.Payloads.validate()...)
	if err := c.Tunnel.Validate(); err != nil {
		errs = append(errs, config.Field("tunnel", err))
	}
	for name, d := range map[string]time.Duration{"handshake": c.Timeouts.Handshake,
		"stream_header": c.Timeouts.StreamHeader, "dial": c.Timeouts.Dial, "stream_idle": c.Timeouts.StreamIdle} {
		if d < 0 {
			errs = append(errs, config.Fieldf(config.Key("timeouts", name), "must not be negative"))
		}
	}
	if c.Backoff.Min < 0 || c.Backoff.Max < 0 || (c.Backoff.Max != 0 && c.Backoff.Max < c.Backoff.Min) {
		errs = append(errs, config.Fieldf("backoff", "want 0 <= min <= max"))
	}
	return errors.Join(errs...)
}

func validateServices(svcs []ServiceConfig) []error {
	if len(svcs) == 0 {
		return []error{config.Fieldf("services", "at least one service is required")}
	}
	var errs []error
	seen := map[string]bool{}
	for i, s := range svcs {
		path := config.Index("services", i)
		if s.Name == "" {
			errs = append(errs, config.Fieldf(config.Key(path, "name"), "required"))
		} else if err := auth.ValidService(s.Name); err != nil {
			errs = append(errs, config.Field(config.Key(path, "name"), err))
		} else if seen[s.Name] {
			errs = append(errs, config.Fieldf(config.Key(path, "name"), "service %q listed twice", s.Name))
		}
		seen[s.Name] = true
		errs = append(errs, validateRouting(path, s)...)
		if s.PathPrefix != "" && !strings.HasPrefix(s.PathPrefix, "/") {
			errs = append(errs, config.Fieldf(config.Key(path, "path_prefix"), "must start with /"))
		}
		if s.Address == "" {
			errs = append(errs, config.Fieldf(config.Key(path, "address"), "required"))
		} else if _, _, err := net.SplitHostPort(s.Address); err != nil {
			errs = append(errs, config.Fieldf(config.Key(path, "address"), "want host:port: %v", err))
		}
		if s.TLS != nil && s.TLS.CAFile != "" && s.TLS.Pin != nil {
			errs = append(errs, config.Fieldf(config.Key(path, "tls"), "set ca_file or pin, not both"))
		}
	}
	return errs
}

// validHost accepts a DNS name or IP literal as agents send it in Host,
// without port or trailing dot.
func validHost(h string) bool {
	if strings.HasSuffix(h, ".") || strings.ContainsAny(h, ":/ @") {
		return net.ParseIP(strings.Trim(h, "[]")) != nil
	}
	return h != ""
}

// validateRouting checks how agents reach a service: by HTTP host or path
// prefix, or by CONNECT (and then by nothing else).
func validateRouting(path string, s ServiceConfig) []error {
	var errs []error
	if s.Connect {
		if s.Host != "" || s.PathPrefix != "" || s.HostRewrite != "" {
			errs = append(errs, config.Fieldf(path, "a connect service has no host, path_prefix or host_rewrite"))
		}
		return errs
	}
	if len(s.Groups) > 0 || s.ProxyProtocol {
		errs = append(errs, config.Fieldf(path, "groups and proxy_protocol apply to connect services only"))
	}
	if s.Host != "" && !validHost(s.Host) {
		errs = append(errs, config.Fieldf(config.Key(path, "host"), "want a host name without port, got %q", s.Host))
	}
	if s.Host == "" && s.PathPrefix == "" {
		errs = append(errs, config.Fieldf(path, "host or path_prefix is required to route requests (or connect: true)"))
	}
	return errs
}
