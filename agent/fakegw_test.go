package agent

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/internal/splice"
)

const testTenant = "acme"

// fakeGateway plays the gateway and the tenant's connector at once, as
// docs/ENROLLMENT.md describes them from the agent's side: the enrollment
// endpoint (ALPN sekisho-enroll/1, a client certificate requested but not
// verified), and for the agent ALPNs a verified client certificate,
// CONNECT to the "echo" service (spliced to a local echo server; any
// other service is forbidden) and plain HTTP requests, recorded.
type fakeGateway struct {
	t        *testing.T
	ca       *certs.CA
	roots    *x509.CertPool // the tenant's agent CA
	server   *certstest.Server
	addr     string
	token    string
	catalog  ed25519.PublicKey
	echoAddr string
	echoLn   net.Listener

	mu            sync.Mutex
	lifetime      time.Duration // of issued certificates; default 3h
	grace         time.Duration // renewal after expiry; default 30 days
	pendingPolls  int           // 202 answers before issuing
	refuse        bool          // refuse every enrollment
	unavailable   int           // enrollment requests answered 503 first
	renewFailures int           // renewals answered 500 first
	nextID        int
	pending       map[string]crypto.PublicKey
	polls         map[string]int
	bodies        [][]byte // enrollment request bodies
	issued        []*x509.Certificate
	renewedFrom   []*big.Int // serials of the certificates presented to renew
	connects      []seenConnect
	requests      []seenRequest

	streamGate chan struct{} // see serveAgentHTTP

	srv   *http.Server
	wg    sync.WaitGroup
	conns sync.Map // hijacked and echo connections, closed on cleanup
}

type seenConnect struct {
	target string
	serial *big.Int
}

type seenRequest struct {
	serial                   *big.Int
	proto, method, host, uri string
	header                   http.Header
	body                     string
}

func newFakeGateway(t *testing.T) *fakeGateway {
	t.Helper()
	// Backdated, so that certificates issued "days ago" chain to it.
	ca, err := certs.NewCA(testTenant, time.Now().Add(-30*24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.NewToken(testTenant, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{
		t: t, ca: ca, roots: x509.NewCertPool(), server: certstest.NewServer(t), token: tok.Text, catalog: pub,
		lifetime: 3 * time.Hour, grace: 30 * 24 * time.Hour,
		pending: map[string]crypto.PublicKey{}, polls: map[string]int{},
		streamGate: make(chan struct{}),
	}
	g.roots.AddCert(ca.Cert)
	g.startEcho()
	g.start()
	return g
}

func (g *fakeGateway) start() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{g.server.Cert},
		NextProtos:       []string{ALPNEnroll, alpnH2, alpnHTTP1},
		ClientAuth:       tls.RequestClientCert,
		VerifyConnection: g.verify,
	}
	// net/http closes a connection whose ALPN protocol it does not know:
	// enrollment connections are handed to a second server.
	enrollLn := &alpnListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	enrollSrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := r.Context().Value(tlsStateKey{}).(tls.ConnectionState)
			r.TLS = &st
			g.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, tlsStateKey{}, c.(*handedConn).state)
		},
		ReadHeaderTimeout: hang, ErrorLog: zaptestStdLog(g.t),
	}
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: hang, ErrorLog: zaptestStdLog(g.t),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){ALPNEnroll: enrollLn.handoff}}
	g.srv.Protocols = new(http.Protocols)
	g.srv.Protocols.SetHTTP1(true)
	g.srv.Protocols.SetHTTP2(true)
	g.wg.Go(func() { g.srv.Serve(tls.NewListener(ln, cfg)) })
	g.wg.Go(func() { enrollSrv.Serve(enrollLn) })
	g.t.Cleanup(func() {
		g.srv.Close()
		enrollSrv.Close()
		g.echoLn.Close()
		g.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		g.wg.Wait()
	})
}

type tlsStateKey struct{}

// alpnListener is fed the connections of one ALPN protocol by the main
// server's TLSNextProto.
type alpnListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *alpnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *alpnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *alpnListener) Addr() net.Addr { return l.addr }

// handoff passes c on, hiding its *tls.Conn type so that the second server
// speaks HTTP/1.1 on it, and holds the main server's goroutine until c is
// closed.
func (l *alpnListener) handoff(_ *http.Server, c *tls.Conn, _ http.Handler) {
	hc := &handedConn{Conn: c, state: c.ConnectionState(), closed: make(chan struct{})}
	select {
	case l.conns <- hc:
	case <-l.done:
		return
	}
	select {
	case <-hc.closed:
	case <-l.done:
	}
}

type handedConn struct {
	net.Conn
	state  tls.ConnectionState
	closed chan struct{}
	once   sync.Once
}

func (c *handedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// verify requires a valid agent certificate for the agent ALPNs.
func (g *fakeGateway) verify(cs tls.ConnectionState) error {
	if cs.NegotiatedProtocol == ALPNEnroll {
		return nil
	}
	_, err := auth.VerifyAgent(cs.PeerCertificates, testTenant, g.roots, time.Now())
	return err
}

// startEcho runs a TCP echo server that passes half-closes on.
func (g *fakeGateway) startEcho() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.t.Fatal(err)
	}
	g.echoAddr = ln.Addr().String()
	g.echoLn = ln
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.conns.Store(c, nil)
			g.wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			})
		}
	})
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.TLS.NegotiatedProtocol == ALPNEnroll && r.Method == http.MethodPost && r.URL.Path == "/v1/enroll":
		g.enroll(w, r)
	case r.TLS.NegotiatedProtocol == ALPNEnroll && r.Method == http.MethodPost && r.URL.Path == "/v1/renew":
		g.renew(w, r)
	case r.TLS.NegotiatedProtocol == ALPNEnroll:
		http.NotFound(w, r)
	case r.Method == http.MethodConnect:
		g.connect(w, r)
	default:
		g.serveAgentHTTP(w, r)
	}
}

// connect serves CONNECT echo:0 by splicing to the echo server.
func (g *fakeGateway) connect(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.connects = append(g.connects, seenConnect{target: r.Host, serial: r.TLS.PeerCertificates[0].SerialNumber})
	g.mu.Unlock()
	if r.Host != "echo:0" {
		http.Error(w, "service not allowed", http.StatusForbidden)
		return
	}
	up, err := net.Dial("tcp", g.echoAddr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	g.conns.Store(conn, nil)
	conn.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	splice.Run(withBuffered(conn, brw.Reader), up, splice.Config{HalfClose: true})
}

// serveAgentHTTP records a plain request and answers with what it saw.
// Two paths check streaming: /stream-down sends a line, then waits for the
// test to have read it before sending the next; /stream-up reads 5 bytes
// and tells the test before reading the rest.
func (g *fakeGateway) serveAgentHTTP(w http.ResponseWriter, r *http.Request) {
	var head []byte
	switch r.URL.Path {
	case "/stream-down":
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-g.streamGate:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
		return
	case "/stream-up":
		head = make([]byte, 5)
		if _, err := io.ReadFull(r.Body, head); err != nil {
			return
		}
		g.streamGate <- struct{}{}
	}
	rest, _ := io.ReadAll(r.Body)
	body := append(head, rest...)
	g.mu.Lock()
	g.requests = append(g.requests, seenRequest{serial: r.TLS.PeerCertificates[0].SerialNumber, proto: r.Proto, method: r.Method, host: r.Host, uri: r.URL.RequestURI(), header: r.Header.Clone(), body: string(body)})
	g.mu.Unlock()
	w.Header().Set("X-Gateway", "fake")
	fmt.Fprintf(w, "gateway saw %s %s%s %q", r.Method, r.Host, r.URL.RequestURI(), body)
}
