package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
)

// Server is a gateway. New starts nothing; Run serves until its context
// ends or Shutdown completes.
type Server struct {
	cfg      Config // as started; a reload replaces gen, not this
	log      *zap.Logger
	access   *zap.Logger
	tlsConf  *tls.Config
	agents   *tls.Config
	tunnels  *tls.Config
	certs    certs.Source
	httpLn   net.Listener            // HTTP-01 and redirects, when configured
	h3       *http3.Server           // agents over QUIC, when configured
	h3Conns  sync.Map                // *quic.Conn -> *connInfo: agents over HTTP/3
	draining atomic.Bool             // Shutdown began: new QUIC agents are refused
	resetKey *quic.StatelessResetKey // agents' HTTP/3 stateless resets, when configured
	enroll   *webServer              // the enrollment endpoint
	enrollTC *tls.Config             // its TLS policy
	enrollRL *rateLimits
	altSvc   string         // Alt-Svc advertising h3 on TCP responses
	devices  *deviceLimiter // concurrent requests per device
	connects *deviceLimiter // concurrent CONNECT streams per device
	hsSem    chan struct{}
	offered  sync.Map // net.Conn -> peer kind, during its handshake
	metrics  *metrics
	reg      *prometheus.Registry
	series   *admin.Series
	events   *admin.Events
	latency  *admin.LatencyWindow
	admin    *admin.Server
	started  time.Time

	ctx    context.Context // ends when the server closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // handshakes, tunnel sessions, draining HTTP servers

	mu           sync.Mutex
	gen          *generation // the current one; guarded by mu, read via current()
	web          *webServer  // the HTTP server new agent connections go to
	webs         []*webServer
	reload       func() (Config, error)
	reloadMu     sync.Mutex
	ln           net.Listener
	ready        chan struct{}
	closed       bool
	shutdown     chan struct{} // closed when Shutdown finished draining
	shutdownOnce sync.Once
}

// generation is what a reload replaces as one piece: the config, the
// tenant set (tenant objects, with their state and sessions, carry over)
// and the relay, whose limits come from the config.
type generation struct {
	cfg     Config
	tenants map[string]*tenant
	pins    map[auth.Pin]*tenant
	relay   *relay
}

// webServer is an HTTP server for agent connections with the limits of
// one config. A reload that changes those limits starts a new one for new
// connections; the old one serves its connections until they end.
type webServer struct {
	limits Limits
	srv    *http.Server
	ln     *chanListener
}

// New checks cfg and builds a gateway.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		access:   cfg.AccessLogger,
		devices:  newDeviceLimiter(cfg.Limits.MaxRequestsPerDevice),
		connects: newDeviceLimiter(cfg.Limits.MaxConnectsPerDevice),
		hsSem:    make(chan struct{}, cfg.Limits.MaxHandshakes),
		events:   admin.NewEvents(50),
		latency:  admin.NewLatencyWindow(time.Minute, 30),
		ready:    make(chan struct{}),
		shutdown: make(chan struct{}),
		started:  cfg.Now(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.buildTLS(); err != nil {
		return nil, err
	}
	s.reg = cfg.Registry
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
		s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s.metrics = newMetrics(s.reg, s)
	s.series = admin.NewSeries(2*time.Second, 300, s.counters)
	s.reload = cfg.ReloadSource
	s.enrollRL = newRateLimits(float64(cfg.Limits.EnrollPerSource), float64(cfg.Limits.EnrollPerTenant))
	s.gen = s.newGeneration(cfg, nil, nil)
	s.web = s.newWebServer(cfg.Limits)
	if err := s.newAdmin(); err != nil {
		return nil, err
	}
	return s, nil
}

// newGeneration builds the pieces of cfg, reusing the tenants of prev and,
// when the relay's limits did not change, its relay.
func (s *Server) newGeneration(cfg Config, prev *generation, rel *relay) *generation {
	g := &generation{cfg: cfg, tenants: map[string]*tenant{}, pins: map[auth.Pin]*tenant{}}
	for _, tc := range cfg.Tenants {
		t := (*tenant)(nil)
		if prev != nil {
			t = prev.tenants[tc.Name]
		}
		if t == nil {
			t = newTenant(tc)
		} else {
			t.setPolicy(tc)
		}
		g.tenants[t.name] = t
		for _, p := range tc.ConnectorPins {
			g.pins[p] = t
		}
	}
	g.relay = rel
	if g.relay == nil {
		g.relay = newRelay(s, cfg.Limits)
	}
	return g
}

// current returns the generation in force.
func (s *Server) current() *generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// tenant returns the tenant named name, or nil.
func (s *Server) tenant(name string) *tenant { return s.current().tenants[name] }

// tenantList returns the tenants sorted by name.
func (s *Server) tenantList() []*tenant {
	g := s.current()
	out := make([]*tenant, 0, len(g.tenants))
	for _, t := range g.tenants {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *tenant) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *Server) buildTLS() error {
	src, err := newCertSource(s.cfg)
	if err != nil {
		return err
	}
	s.certs = src
	curves, err := certs.ParseCurves(s.cfg.TLS.Curves)
	if err != nil {
		return fmt.Errorf("tls.curves: %w", err)
	}
	s.agents = certs.ServerConfig(curves)
	s.agents.GetCertificate = src.GetCertificate
	s.agents.NextProtos = []string{"h2", "http/1.1"}
	// Request, and let verifyAgent refuse the absence, so the log says why.
	s.agents.ClientAuth = tls.RequestClientCert
	s.agents.VerifyConnection = s.verifyAgent

	s.tunnels = certs.ServerConfig(curves)
	s.tunnels.GetCertificate = src.GetCertificate
	s.tunnels.NextProtos = []string{tunnelALPN}
	s.tunnels.ClientAuth = tls.RequireAnyClientCert
	s.tunnels.SessionTicketsDisabled = true
	s.tunnels.VerifyConnection = s.verifyConnector

	s.enrollTC = s.enrollTLS(s.agents)

	s.tlsConf = certs.ServerConfig(curves)
	s.tlsConf.GetCertificate = src.GetCertificate
	s.tlsConf.GetConfigForClient = s.configForClient
	return nil
}

// Run listens (unless Config.Listener is set) and serves until ctx ends,
// which closes everything at once, or until Shutdown has drained.
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	httpLn, err := s.listenHTTP()
	if err != nil {
		ln.Close()
		return err
	}
	quicAgents, quicTunnels, err := s.listenQUIC()
	if err != nil {
		ln.Close()
		if httpLn != nil {
			httpLn.Close()
		}
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		if httpLn != nil {
			httpLn.Close()
		}
		return errors.New("gateway: closed")
	}
	s.ln, s.httpLn = ln, httpLn
	if quicAgents != nil {
		s.h3, s.altSvc = s.newH3Server(), s.altSvcFor(quicAgents)
	}
	g := s.gen
	s.mu.Unlock()
	s.startWeb(s.web)
	s.enroll = s.newEnrollServer()
	s.startWeb(s.enroll)
	if s.admin != nil {
		s.wg.Go(func() {
			if err := s.admin.Run(s.ctx); err != nil {
				s.log.Error("admin listener", zap.Error(err))
			}
		})
	}
	s.wg.Go(func() { s.series.Run(s.ctx) })
	certErr := make(chan error, 1)
	s.wg.Go(func() { certErr <- s.runCertificates(s.ctx) })
	quicErr := make(chan error, 2)
	if quicAgents != nil {
		s.wg.Go(func() { defer quicAgents.Close(); quicErr <- s.serveH3(s.ctx, quicAgents, s.h3) })
	}
	if quicTunnels != nil {
		s.wg.Go(func() { defer quicTunnels.Close(); quicErr <- s.serveQUICTunnels(s.ctx, quicTunnels) })
	}
	close(s.ready)
	s.log.Info("gateway listening", zap.String("addr", ln.Addr().String()), zap.Int("tenants", len(g.tenants)))

	acceptErr := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { acceptErr <- s.acceptLoop(ln) })
	for {
		select {
		case <-ctx.Done():
			return s.Close()
		case <-s.shutdown:
			return nil
		case err := <-acceptErr:
			if err != nil {
				s.Close()
				return err
			}
			acceptErr = nil // the listener closed for Shutdown: wait for it
		case err := <-quicErr:
			if err != nil {
				s.log.Error("QUIC listener failed, stopping", zap.Error(err))
				s.Close()
				return err
			}
		case err := <-certErr:
			if err != nil {
				s.log.Error("no certificate to serve, stopping", zap.Error(err))
				s.Close()
				return err
			}
			certErr = nil
		}
	}
}

// startWeb serves w on its own listener of handshaken connections.
func (s *Server) startWeb(w *webServer) {
	s.mu.Lock()
	w.ln = newChanListener(s.ln.Addr())
	s.webs = append(s.webs, w)
	s.mu.Unlock()
	s.wg.Go(func() {
		w.srv.Serve(w.ln)
		s.mu.Lock()
		s.webs = slices.DeleteFunc(s.webs, func(x *webServer) bool { return x == w })
		s.mu.Unlock()
	})
}

// currentWeb returns the HTTP server new agent connections go to.
func (s *Server) currentWeb() *webServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.web
}

// Addr returns the listening address once Run has started listening.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.ln.Addr()
}

// AdminAddr returns the admin listener's address, or nil without one.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.Addr()
}

// Registry is the gateway's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Shutdown stops accepting connections, lets in-flight agent requests
// finish until ctx ends, then closes the connectors' sessions. Run returns
// once it is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	webs := slices.Clone(s.webs)
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	s.draining.Store(true)
	s.log.Info("gateway draining")
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	if s.h3 != nil {
		stop := make(chan struct{})
		wg.Go(func() {
			defer close(stop)
			if err := s.h3.Shutdown(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
		wg.Go(func() { s.closeIdleH3(ctx, stop) })
	}
	for _, w := range webs {
		wg.Go(func() {
			if err := w.srv.Shutdown(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err != nil {
		s.log.Warn("drain deadline passed, closing", zap.Error(err))
	}
	s.Close()
	s.shutdownOnce.Do(func() { close(s.shutdown) })
	return err
}

// Close stops everything at once and waits for the gateway's goroutines.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	ln := s.ln
	webs := slices.Clone(s.webs)
	rel := s.gen.relay
	s.mu.Unlock()
	s.cancel()
	if ln != nil {
		ln.Close()
	}
	var err error
	for _, w := range webs {
		w.ln.Close()
		err = errors.Join(err, w.srv.Close())
	}
	if s.h3 != nil {
		s.h3.Close()
	}
	rel.close()
	s.wg.Wait()
	return err
}
