package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Config is the admin: section of a role's config file.
type Config struct {
	// Listen is the admin address. Each role documents its default; keep
	// it on loopback or a management network. "off" disables the listener.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token that mutating endpoints require.
	// Without it they answer 403: reading is open, changing is not.
	TokenFile string `yaml:"token_file"`
	// Pprof serves /debug/pprof/. Default off.
	Pprof bool `yaml:"pprof"`
}

// Off reports whether the listener is disabled.
func (c Config) Off() bool { return c.Listen == "off" }

// Options are what a role hands to its admin server.
type Options struct {
	Config   Config
	Gatherer prometheus.Gatherer
	// Status returns the JSON document of /api/status.
	Status func() any
	// Ready returns nil when the role should receive traffic.
	Ready func() error
	// Actions are POST /api/{name} endpoints taking a JSON body (at most
	// 64 KiB); each requires the token.
	Actions map[string]Action
	// Queries are GET /api/{name} endpoints that show more than status
	// (devices, tokens); each requires the token too.
	Queries map[string]Query
	Logger  *zap.Logger
	// Listener, when set, is used instead of listening on Config.Listen.
	Listener net.Listener
}

// Action changes something; body is the request's JSON.
type Action func(ctx context.Context, body []byte) (any, error)

// Query reads something not everyone may see.
type Query func(ctx context.Context, q url.Values) (any, error)

// Server is a role's admin HTTP server.
type Server struct {
	opts  Options
	token []byte
	srv   *http.Server
	mu    sync.Mutex
	ln    net.Listener
	ready chan struct{}
}

// New checks the options and reads the token file. It starts nothing.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, ready: make(chan struct{})}
	if opts.Logger == nil {
		s.opts.Logger = zap.NewNop()
	}
	if f := opts.Config.TokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
		s.token = []byte(strings.TrimSpace(string(b)))
		if len(s.token) < 16 {
			return nil, fmt.Errorf("admin.token_file: %s: token shorter than 16 characters", f)
		}
	}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(s.opts.Logger.Named("admin")),
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /api/status", s.status)
	mux.HandleFunc("POST /api/{action...}", s.action)
	mux.HandleFunc("GET /api/{query...}", s.query)
	mux.Handle("GET /", uiHandler())
	if s.opts.Config.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Status == nil {
		http.NotFound(w, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.opts.Status())
}

// action runs an authenticated POST /api/{action}.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("action")
	f := s.opts.Actions[name]
	if f == nil {
		http.NotFound(w, r)
		return
	}
	if !s.allow(w, r, name) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	out, err := f(r.Context(), body)
	s.answer(w, out, err)
}

// query runs an authenticated GET /api/{query}.
func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("query")
	f := s.opts.Queries[name]
	if f == nil {
		http.NotFound(w, r)
		return
	}
	if !s.allow(w, r, name) {
		return
	}
	out, err := f(r.Context(), r.URL.Query())
	s.answer(w, out, err)
}

// allow checks the token and answers 403 when it is wrong.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, name string) bool {
	if s.authorized(r) {
		return true
	}
	s.opts.Logger.Warn("admin request refused", zap.String("endpoint", name),
		zap.String("remote_addr", r.RemoteAddr), zap.String("reason", "bad or missing token"))
	w.Header().Set("WWW-Authenticate", `Bearer realm="sekisho-admin"`)
	http.Error(w, "forbidden", http.StatusForbidden)
	return false
}

// answer writes a JSON result, or {"error"} with 422.
func (s *Server) answer(w http.ResponseWriter, out any, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// authorized compares the bearer token in constant time; without a
// configured token nothing is authorized.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.token) == 0 {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), s.token) == 1
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln := s.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.opts.Config.Listen); err != nil {
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	s.mu.Lock()
	s.ln = ln
	close(s.ready)
	s.mu.Unlock()
	s.opts.Logger.Info("admin listening", zap.String("addr", ln.Addr().String()))
	stop := context.AfterFunc(ctx, func() { s.srv.Close() })
	defer stop()
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Addr returns the listening address once Run has started.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.ln.Addr()
}
