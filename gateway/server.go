package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// Server is a gateway. New starts nothing; Run serves until its context
// ends or Shutdown completes.
type Server struct {
	cfg     Config
	log     *zap.Logger
	tenants map[string]*tenant
	pins    map[auth.Pin]*tenant
	tlsConf *tls.Config
	agents  *tls.Config
	tunnels *tls.Config
	http    *http.Server
	httpLn  *chanListener
	relay   *relay
	devices *deviceLimiter
	hsSem   chan struct{}

	ctx    context.Context // ends when the server closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // handshakes and tunnel sessions

	mu           sync.Mutex
	ln           net.Listener
	ready        chan struct{}
	closed       bool
	shutdown     chan struct{} // closed when Shutdown finished draining
	shutdownOnce sync.Once
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
		tenants:  map[string]*tenant{},
		pins:     map[auth.Pin]*tenant{},
		devices:  newDeviceLimiter(cfg.Limits.MaxRequestsPerDevice),
		hsSem:    make(chan struct{}, cfg.Limits.MaxHandshakes),
		ready:    make(chan struct{}),
		shutdown: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, tc := range cfg.Tenants {
		t := newTenant(tc)
		s.tenants[t.name] = t
		for _, p := range tc.ConnectorPins {
			s.pins[p] = t
		}
	}
	if err := s.buildTLS(); err != nil {
		return nil, err
	}
	s.relay = newRelay(s)
	s.http = s.newHTTPServer()
	return s, nil
}

func (s *Server) buildTLS() error {
	cert := s.cfg.Certificate
	if cert == nil {
		c, err := certs.LoadKeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		cert = &c
	}
	curves, err := certs.ParseCurves(s.cfg.TLS.Curves)
	if err != nil {
		return fmt.Errorf("tls.curves: %w", err)
	}
	s.agents = certs.ServerConfig(curves)
	s.agents.Certificates = []tls.Certificate{*cert}
	s.agents.NextProtos = []string{"h2", "http/1.1"}
	// Request, and let verifyAgent refuse the absence, so the log says why.
	s.agents.ClientAuth = tls.RequestClientCert
	s.agents.VerifyConnection = s.verifyAgent

	s.tunnels = certs.ServerConfig(curves)
	s.tunnels.Certificates = []tls.Certificate{*cert}
	s.tunnels.NextProtos = []string{tunnelALPN}
	s.tunnels.ClientAuth = tls.RequireAnyClientCert
	s.tunnels.SessionTicketsDisabled = true
	s.tunnels.VerifyConnection = s.verifyConnector

	s.tlsConf = certs.ServerConfig(curves)
	s.tlsConf.Certificates = []tls.Certificate{*cert}
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
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("gateway: closed")
	}
	s.ln = ln
	s.httpLn = newChanListener(ln.Addr())
	close(s.ready)
	s.mu.Unlock()
	s.log.Info("gateway listening", zap.String("addr", ln.Addr().String()), zap.Int("tenants", len(s.tenants)))

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.http.Serve(s.httpLn) })
	acceptErr := make(chan error, 1)
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
		}
	}
}

// Addr returns the listening address once Run has started listening.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.ln.Addr()
}

// Shutdown stops accepting connections, lets in-flight agent requests
// finish until ctx ends, then closes the connectors' sessions. Run returns
// once it is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	s.log.Info("gateway draining")
	err := s.http.Shutdown(ctx)
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
	ln, hl := s.ln, s.httpLn
	s.mu.Unlock()
	s.cancel()
	if ln != nil {
		ln.Close()
	}
	if hl != nil {
		hl.Close()
	}
	err := s.http.Close()
	s.relay.close()
	s.wg.Wait()
	return err
}
