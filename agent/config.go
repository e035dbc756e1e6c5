package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/internal/config"
)

// Defaults of Config.
const (
	DefaultRenewAt     = 2.0 / 3
	DefaultRetryMin    = 5 * time.Second
	DefaultRetryMax    = 5 * time.Minute
	DefaultMaxConns    = 256
	DefaultIdleTimeout = 10 * time.Minute
	DefaultDialTimeout = 10 * time.Second
)

// Transports of Config.Transport.
const (
	TransportTCP  = "tcp"
	TransportQUIC = "quic"
	TransportAuto = "auto"
)

// Config configures an agent. The zero value of every field means the
// default written in its comment.
type Config struct {
	// Gateways are tried in order; the agent sticks to the last one that
	// worked and moves to the next when a dial or handshake fails. At
	// least one.
	Gateways []GatewayConfig `yaml:"gateways"`
	// StateDir holds the identity: agent.key, agent.pem, catalog-keys.json.
	// Default DefaultStateDir().
	StateDir string `yaml:"state_dir"`
	// RenewAt is the fraction of the certificate's lifetime after which it
	// is renewed, in (0, 1). Default 2/3.
	RenewAt float64 `yaml:"renew_at"`
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// failed renewals and enrollment polls. Defaults 5s and 5m.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// DialTimeout bounds the TCP connect and TLS handshake to one gateway,
	// the QUIC handshake and the probe of a new network path, and the
	// answer to a CONNECT. Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Transport carries HTTP requests (the local HTTP proxy's and
	// HTTPClient's) to the gateways: "tcp" (HTTP/2 or HTTP/1.1 over TLS),
	// "quic" (HTTP/3 over UDP to the same host and port as the gateway's
	// address; its connections follow the PC from one network to
	// another), or "auto" (HTTP/3 to the gateway that worked last, and
	// TCP for 5 minutes whenever it does not answer over UDP within 3s).
	// CONNECT tunnels (forwards, the proxy's CONNECT) and enrollment
	// always go over TCP. Default tcp.
	Transport string `yaml:"transport"`
	// Forwards are local TCP ports forwarded to named services.
	Forwards []Forward `yaml:"forwards"`
	// HTTPProxy is the local HTTP proxy. Off unless Listen is set.
	HTTPProxy HTTPProxyConfig `yaml:"http_proxy"`
	// MaxConns bounds the relayed connections open at once (forwards and
	// proxy CONNECTs together). Default 256.
	MaxConns int `yaml:"max_conns"`
	// IdleTimeout closes a relayed connection when nothing moved either
	// way for that long. Default 10m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`

	// Logger receives the agent's logs. Default: none.
	Logger *zap.Logger `yaml:"-"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// After waits like time.After; tests inject it. Default time.After.
	After func(time.Duration) <-chan time.Time `yaml:"-"`
	// Rand drives backoff jitter (values in [0, 1)). Default math/rand.
	Rand func() float64 `yaml:"-"`
	// DialContext opens TCP connections to the gateways. Default a
	// net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error) `yaml:"-"`
}

// GatewayConfig is one gateway.
type GatewayConfig struct {
	// Address is host:port of the gateway's TCP port.
	Address string `yaml:"address"`
	// ServerName is the name checked in the gateway's certificate.
	// Default the host of Address.
	ServerName string `yaml:"server_name"`
	// CAFile holds the PEM roots that must have issued the gateway's
	// certificate. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// RootCAs, when set, replaces CAFile.
	RootCAs *x509.CertPool `yaml:"-"`
}

// Forward is one local TCP port forwarded to a service.
type Forward struct {
	// Listen is the local address, such as "127.0.0.1:5900".
	Listen string `yaml:"listen"`
	// Service names the tenant's service to CONNECT to.
	Service string `yaml:"service"`
	// AllowRemote allows a non-loopback Listen address. Default false: an
	// agent must not become a relay for its LAN.
	AllowRemote bool `yaml:"allow_remote"`
}

// HTTPProxyConfig is the local HTTP proxy for management software.
type HTTPProxyConfig struct {
	// Listen is the local address, such as "127.0.0.1:3128". Empty: no
	// proxy.
	Listen string `yaml:"listen"`
	// ConnectServices maps the "host:port" that software CONNECTs to onto
	// a service name. A CONNECT to a host that is itself a service name
	// maps to that service; any other CONNECT is refused.
	ConnectServices map[string]string `yaml:"connect_services"`
	// AllowRemote allows a non-loopback Listen address. Default false.
	AllowRemote bool `yaml:"allow_remote"`
	// PayloadHoldBack is how many final bytes of a payload the proxy holds
	// until its digest matches; payloads up to this size are verified
	// whole before the first byte goes out. Default 1MiB.
	PayloadHoldBack int `yaml:"payload_hold_back" config:"bytes"`
}

// DefaultStateDir is where the identity lives when Config.StateDir is
// empty: C:\ProgramData\sekisho\agent on Windows, /var/lib/sekisho-agent
// elsewhere.
func DefaultStateDir() string {
	if runtime.GOOS == "windows" {
		return `C:\ProgramData\sekisho\agent`
	}
	return "/var/lib/sekisho-agent"
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir()
	}
	if c.RenewAt == 0 {
		c.RenewAt = DefaultRenewAt
	}
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, max(DefaultRetryMax, c.RetryMin))
	def(&c.DialTimeout, DefaultDialTimeout)
	if c.Transport == "" {
		c.Transport = TransportTCP
	}
	def(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
	if c.DialContext == nil {
		c.DialContext = (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext
	}
	return c
}

// Validate checks c and names the field of each problem.
func (c *Config) Validate() error {
	errs := validateGateways(c.Gateways)
	if c.RenewAt < 0 || c.RenewAt >= 1 {
		errs = append(errs, config.Fieldf("renew_at", "want a fraction of the lifetime in (0, 1), not %v", c.RenewAt))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"retry_min", c.RetryMin}, {"retry_max", c.RetryMax}, {"dial_timeout", c.DialTimeout}, {"idle_timeout", c.IdleTimeout}} {
		if d.v < 0 {
			errs = append(errs, config.Fieldf(d.key, "must not be negative"))
		}
	}
	if c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, config.Fieldf("retry_min", "%v is more than retry_max %v", c.RetryMin, c.RetryMax))
	}
	if c.MaxConns < 0 {
		errs = append(errs, config.Fieldf("max_conns", "must not be negative"))
	}
	if err := checkTransport(c.Transport); err != nil {
		errs = append(errs, config.Field("transport", err))
	}
	errs = append(errs, validateListeners(c.Forwards, c.HTTPProxy)...)
	return errors.Join(errs...)
}

func validateGateways(gws []GatewayConfig) []error {
	if len(gws) == 0 {
		return []error{config.Fieldf("gateways", "at least one gateway is required")}
	}
	var errs []error
	for i, g := range gws {
		path := config.Key(config.Index("gateways", i), "address")
		if g.Address == "" {
			errs = append(errs, config.Fieldf(path, "required"))
		} else if _, _, err := net.SplitHostPort(g.Address); err != nil {
			errs = append(errs, config.Fieldf(path, "want host:port: %v", err))
		}
	}
	return errs
}

// checkTransport checks a Config.Transport; empty means the default.
func checkTransport(t string) error {
	switch t {
	case "", TransportTCP, TransportQUIC, TransportAuto:
		return nil
	}
	return fmt.Errorf("%q: want tcp, quic or auto", t)
}

// validateListeners checks the forwards and the proxy, and that no two of
// them listen on the same address.
func validateListeners(fwds []Forward, p HTTPProxyConfig) []error {
	var errs []error
	seen := map[string]string{}
	listen := func(path, addr string, allowRemote bool) {
		if err := checkListen(addr, allowRemote); err != nil {
			errs = append(errs, config.Field(path, err))
		} else if other, dup := seen[addr]; dup {
			errs = append(errs, config.Fieldf(path, "%s is also %s", addr, other))
		}
		seen[addr] = path
	}
	for i, f := range fwds {
		at := config.Index("forwards", i)
		listen(config.Key(at, "listen"), f.Listen, f.AllowRemote)
		if err := auth.ValidService(f.Service); err != nil {
			errs = append(errs, config.Field(config.Key(at, "service"), err))
		}
	}
	if p.Listen != "" {
		listen("http_proxy.listen", p.Listen, p.AllowRemote)
	}
	for hostport, svc := range p.ConnectServices {
		path := config.Key("http_proxy.connect_services", hostport)
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			errs = append(errs, config.Fieldf(path, "key: want host:port: %v", err))
		}
		if err := auth.ValidService(svc); err != nil {
			errs = append(errs, config.Field(path, err))
		}
	}
	return errs
}

// errNotLoopback is wrapped by listen address errors that allow_remote
// would lift.
var errNotLoopback = errors.New("not a loopback address: an agent must not relay for its LAN (set allow_remote: true to allow it)")

// checkListen checks a listen address: host:port, and loopback unless
// allowRemote.
func checkListen(addr string, allowRemote bool) error {
	if addr == "" {
		return errors.New("required")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if allowRemote || strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: %w", addr, errNotLoopback)
	}
	return nil
}
