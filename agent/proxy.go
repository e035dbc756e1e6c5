package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/internal/splice"
)

// proxyDrain is how long the proxy lets requests in flight finish on
// shutdown before closing their connections.
const proxyDrain = 5 * time.Second

// proxy is the local HTTP proxy: absolute-form http:// requests are sent
// to the gateways as HTTPS requests with the original Host; CONNECT to a
// mapped host:port becomes a CONNECT to a service. It never connects
// anywhere but the gateways.
type proxy struct {
	services map[string]string // lowercase host:port -> service
	relays   *relays
	log      *zap.Logger
	rp       *httputil.ReverseProxy
	srv      *http.Server
	ln       net.Listener
	payloads *PayloadFollower
}

// newProxy builds the proxy; po configures the payload follower (its
// Gateway is the proxy's own transport).
func newProxy(services map[string]string, ln net.Listener, r *relays, po PayloadOptions, log *zap.Logger) *proxy {
	p := &proxy{services: map[string]string{}, relays: r, log: log, ln: ln}
	for hp, svc := range services {
		p.services[strings.ToLower(hp)] = svc
	}
	errLog := zap.NewStdLog(log.Named("http_proxy"))
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      r.client.transport,
		ModifyResponse: p.handleGatewayResponse,
		ErrorHandler:   p.gatewayError,
		BufferPool:     bufferPool{},
		ErrorLog:       errLog,
	}
	po.Gateway, po.Logger = p.rp.Transport, log
	p.payloads = NewPayloadFollower(po)
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	return p
}

// serve runs the proxy until ctx ends, then lets requests in flight
// finish for up to proxyDrain before closing their connections. Tunnels
// of CONNECT requests belong to relays, which close them.
func (p *proxy) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- p.srv.Serve(p.ln) }()
	select {
	case err := <-errc:
		return err // the listener failed
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), proxyDrain)
	defer cancel()
	if p.srv.Shutdown(dctx) != nil {
		p.srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeHTTP dispatches CONNECT and absolute-form requests.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		p.serveConnect(w, r)
	case r.URL.Scheme == "http" && r.URL.Host != "":
		p.rp.ServeHTTP(w, r)
	default:
		http.Error(w, "sekisho agent proxy: send absolute-form http:// requests or CONNECT", http.StatusBadRequest)
	}
}

// rewrite turns an absolute-form http:// request into an HTTPS request to
// the gateways (the transport dials nothing else) with the same method,
// path, query, body and Host. Hop-by-hop and forwarding headers are
// already gone; Proxy-* headers are for us, not for the core.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "https"
	pr.Out.URL.Host = pr.In.URL.Host
	pr.Out.Host = pr.In.URL.Host
	for k := range pr.Out.Header {
		if strings.HasPrefix(k, "Proxy-") {
			delete(pr.Out.Header, k)
		}
	}
}

// handleGatewayResponse is where every gateway response passes on its way
// back to the local client. A signed payload answer (a redirect to a CDN,
// or a relayed payload with its signed entry) is followed here: the client
// gets the verified payload, or an error that says why, never the
// redirect and never an unverified payload as complete.
func (p *proxy) handleGatewayResponse(resp *http.Response) error {
	out, err := p.payloads.Follow(resp)
	if err != nil {
		return err
	}
	*resp = *out
	return nil
}

func (p *proxy) gatewayError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the local client went away
	}
	p.log.Warn("proxy request failed", zap.String("method", r.Method), zap.String("host", r.Host), zap.Error(err))
	http.Error(w, "sekisho agent proxy: no gateway answered", http.StatusBadGateway)
}

// serviceFor maps a CONNECT target to a service: the configured mapping,
// else the host itself when it is a service name.
func (p *proxy) serviceFor(hostport string) (string, bool) {
	hostport = strings.ToLower(hostport)
	if svc, ok := p.services[hostport]; ok {
		return svc, true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return host, auth.ValidService(host) == nil
}

// serveConnect relays a CONNECT to the service its target maps to.
func (p *proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	svc, ok := p.serviceFor(r.Host)
	if !ok {
		p.log.Info("proxy CONNECT refused", zap.String("target", r.Host))
		http.Error(w, "sekisho agent proxy: "+r.Host+" is not a sekisho service", http.StatusForbidden)
		return
	}
	if !p.relays.acquire() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "sekisho agent proxy: too many connections", http.StatusServiceUnavailable)
		return
	}
	defer p.relays.release()
	remote, err := p.relays.client.DialConnect(r.Context(), svc)
	if err != nil {
		p.connectError(w, r, svc, err)
		return
	}
	local, err := hijack(w)
	if err != nil {
		remote.Close()
		p.log.Warn("proxy CONNECT hijack failed", zap.Error(err))
		return
	}
	if !p.relays.track(local) {
		local.Close()
		remote.Close()
		return
	}
	defer p.relays.untrack(local)
	p.relays.splice(local, remote, svc)
}

// hijack takes the client connection over and tells the client the
// tunnel is up; bytes the client sent early are kept.
func hijack(w http.ResponseWriter) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	return withBuffered(conn, brw.Reader), nil
}

// connectError answers a CONNECT the gateway refused with the gateway's
// status when it means something to the client, else 502.
func (p *proxy) connectError(w http.ResponseWriter, r *http.Request, svc string, err error) {
	p.log.Warn("proxy CONNECT failed", zap.String("target", r.Host), zap.String("service", svc), zap.Error(err))
	code := http.StatusBadGateway
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			code = se.Code
		}
		if se.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(se.RetryAfter.Seconds())))
		}
	}
	http.Error(w, "sekisho agent proxy: "+err.Error(), code)
}

// bufferPool lends the splice package's pooled buffers to ReverseProxy.
type bufferPool struct{}

func (bufferPool) Get() []byte  { return *splice.GetBuffer() }
func (bufferPool) Put(b []byte) { splice.PutBuffer(&b) }
