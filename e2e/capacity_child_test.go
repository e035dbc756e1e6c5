package e2e

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/sekisho/sekisho/certs"
)

// The capacity benchmarks measure a server (a bare Go mTLS or quic-go
// server, or the gateway) in this process, so its memory and CPU are its
// own, while the agents run in a child process: this test binary started
// again as TestCapacityChild, driven over its stdin and stdout.

// childEnv carries the child's spec; without it TestCapacityChild skips.
const childEnv = "SEKISHO_CAPACITY_CHILD"

// bareALPN is what the bare servers and their agents negotiate.
const bareALPN = "sekisho-capacity"

// childSpec tells the child what kind of agents to be.
type childSpec struct {
	// Mode: "tls" (bare mTLS: a ping line and its answer), "h1", "h2"
	// (HTTP over mTLS), "quic" (bare QUIC: a ping on one stream), "h3".
	Mode   string
	Target string
	// Dir holds ca.pem and ca.key (the tenant CA to mint agents from) and
	// roots.pem (the server's CA).
	Dir    string
	Tenant string
	// Path is requested by HTTP agents.
	Path string
}

// child is the parent's handle on a running child.
type child struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	errs    strings.Builder
	stopped sync.Once
}

// writeChildPKI writes what a child needs to make agents of ca that trust
// server.
func writeChildPKI(tb testing.TB, ca *certs.CA, serverCA *x509.Certificate) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, err := range []error{
		certs.WriteCert(filepath.Join(dir, "ca.pem"), ca.Cert.Raw),
		certs.WriteKey(filepath.Join(dir, "ca.key"), ca.Key),
		certs.WriteCert(filepath.Join(dir, "roots.pem"), serverCA.Raw),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// startChild starts the agents' process; it ends when the test does.
func startChild(tb testing.TB, spec childSpec) *child {
	tb.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		tb.Fatal(err)
	}
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestCapacityChild$", "-test.count=1", "-test.v=false")}
	// A race-enabled child would otherwise sleep a second at exit.
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(js), "GORACE=atexit_sleep_ms=0")
	c.cmd.Stderr = &c.errs
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	c.out = bufio.NewScanner(out)
	if err := c.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.stop(tb) })
	return c
}

// do sends one command ("connect N", "handshake N") and returns the
// number in the child's "ok N" answer.
func (c *child) do(tb testing.TB, cmd string) int {
	tb.Helper()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		tb.Fatalf("child: %s: %v\n%s", cmd, err, c.errs.String())
	}
	for c.out.Scan() {
		line := c.out.Text()
		if n, ok := strings.CutPrefix(line, "ok "); ok {
			v, _ := strconv.Atoi(n)
			return v
		}
		if msg, ok := strings.CutPrefix(line, "err "); ok {
			tb.Fatalf("child: %s: %s", cmd, msg)
		}
	}
	tb.Fatalf("child: %s: no answer (%v)\n%s", cmd, c.out.Err(), c.errs.String())
	return 0
}

// stop closes the child's stdin, which makes it close its agents and
// exit, and waits for that. It may be called more than once.
func (c *child) stop(tb testing.TB) {
	c.stopped.Do(func() { c.wait(tb) })
}

func (c *child) wait(tb testing.TB) {
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("child: %v\n%s", err, c.errs.String())
		}
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-done
		tb.Errorf("child did not exit\n%s", c.errs.String())
	}
}

// TestCapacityChild is the agents' side of the capacity benchmarks; it
// runs only as their child process.
func TestCapacityChild(t *testing.T) {
	js := os.Getenv(childEnv)
	if js == "" {
		t.Skip("the agents' process of the capacity benchmarks, started by them")
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		t.Fatal(err)
	}
	f, err := newChildFleet(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		verb, arg, _ := strings.Cut(in.Text(), " ")
		n, _ := strconv.Atoi(arg)
		var got int
		switch verb {
		case "connect":
			got, err = f.connect(n)
		case "handshake":
			got, err = f.handshakes(n)
		default:
			err = fmt.Errorf("unknown command %q", verb)
		}
		if err != nil {
			fmt.Printf("err %v\n", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Printf("ok %d\n", got)
	}
}

// childFleet is the child's agents: one key, a certificate per agent,
// TCP agents spread over 127.0.0.x, QUIC agents sharing UDP sockets.
type childFleet struct {
	spec  childSpec
	ca    *certs.CA
	roots *x509.CertPool
	key   crypto.Signer
	addr  *net.UDPAddr

	mu      sync.Mutex
	n       int
	closers []func()
	sockets []*quic.Transport
}

const agentsPerSocket = 2000

func newChildFleet(spec childSpec) (*childFleet, error) {
	ca, err := certs.LoadCA(spec.Tenant, filepath.Join(spec.Dir, "ca.pem"), filepath.Join(spec.Dir, "ca.key"))
	if err != nil {
		return nil, err
	}
	rc, err := certs.LoadCerts(filepath.Join(spec.Dir, "roots.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(rc[0])
	key, err := certs.NewKey()
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", spec.Target)
	if err != nil {
		return nil, err
	}
	return &childFleet{spec: spec, ca: ca, roots: roots, key: key, addr: addr}, nil
}

// tlsConfig is a fresh agent configuration (no session cache: every
// handshake is a full one).
func (f *childFleet) tlsConfig(i int) (*tls.Config, error) {
	leaf, err := f.ca.IssueAgent(certs.AgentRequest{DeviceID: fmt.Sprintf("cap-%06d", i), PublicKey: f.key.Public(), Now: time.Now()})
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{RootCAs: f.roots, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{certs.TLSCertificate(leaf, f.key)}}
	switch f.spec.Mode {
	case "tls", "quic":
		conf.NextProtos = []string{bareALPN}
	case "h1":
		conf.NextProtos = []string{"http/1.1"}
	case "h2":
		conf.NextProtos = []string{"h2", "http/1.1"}
	case "h3":
		conf.NextProtos = []string{http3.NextProtoH3}
	}
	return conf, nil
}

// connect adds n agents, 32 at a time, and returns how many are held.
func (f *childFleet) connect(n int) (int, error) {
	f.mu.Lock()
	first := f.n
	f.n += n
	f.mu.Unlock()
	err := parallel(first, n, 32, func(i int) error {
		closer, err := f.agent(i)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.closers = append(f.closers, closer)
		f.mu.Unlock()
		return nil
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.closers), err
}

// parallel runs fn(first) .. fn(first+n-1), width at a time, and returns
// the first error.
func parallel(first, n, width int, fn func(int) error) error {
	var next atomic.Int64
	next.Store(int64(first))
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range width {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= first+n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// agent connects agent i and returns what closes it.
func (f *childFleet) agent(i int) (func(), error) {
	conf, err := f.tlsConfig(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch f.spec.Mode {
	case "tls":
		c, err := f.dialTLS(ctx, i, conf)
		if err != nil {
			return nil, err
		}
		return func() { c.Close() }, ping(c)
	case "quic":
		c, err := f.socket(i).Dial(ctx, f.addr, conf, childQUICConfig())
		if err != nil {
			return nil, err
		}
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		return func() { c.CloseWithError(0, "") }, ping(s)
	case "h1", "h2":
		tr := &http.Transport{
			DialTLSContext:    func(ctx context.Context, _, _ string) (net.Conn, error) { return f.dialTLS(ctx, i, conf) },
			ForceAttemptHTTP2: f.spec.Mode == "h2", MaxIdleConnsPerHost: 1,
		}
		return tr.CloseIdleConnections, getOK(ctx, tr, f.spec.Target, f.spec.Path)
	case "h3":
		qt := f.socket(i)
		tr := &http3.Transport{TLSClientConfig: conf, QUICConfig: childQUICConfig(),
			Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				return qt.Dial(ctx, f.addr, tc, qc)
			}}
		return func() { tr.Close() }, getOK(ctx, tr, f.spec.Target, f.spec.Path)
	}
	return nil, fmt.Errorf("unknown mode %q", f.spec.Mode)
}

func childQUICConfig() *quic.Config {
	return &quic.Config{MaxIdleTimeout: 5 * time.Minute, HandshakeIdleTimeout: 15 * time.Second}
}

// dialTLS dials from 127.0.0.(2 + i%50), so ports never run out.
func (f *childFleet) dialTLS(ctx context.Context, i int, conf *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%50))}, KeepAlive: -1}
	raw, err := d.DialContext(ctx, "tcp", f.spec.Target)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// ping writes a line and reads the bare server's answer.
func ping(rw io.ReadWriter) error {
	if _, err := io.WriteString(rw, "ping\n"); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(rw, 16).ReadString('\n')
	if err != nil || line != "pong\n" {
		return fmt.Errorf("ping: %q, %v", line, err)
	}
	return nil
}

func getOK(ctx context.Context, rt http.RoundTripper, target, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+target+path, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// socket returns the UDP socket shared by agent i and its neighbours.
func (f *childFleet) socket(i int) *quic.Transport {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.sockets) <= i/agentsPerSocket {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			panic(err) // loopback UDP cannot fail here
		}
		f.sockets = append(f.sockets, &quic.Transport{Conn: c})
	}
	return f.sockets[i/agentsPerSocket]
}

// handshakes makes n full TLS handshakes, 4 at a time, each on a new
// connection that ends at once, and returns how many completed. The agent
// half-closes and waits for the server to close, so that the server's
// side of every handshake is complete and its end is clean.
func (f *childFleet) handshakes(n int) (int, error) {
	var ok atomic.Int64
	err := parallel(0, n, 4, func(i int) error {
		conf, err := f.tlsConfig(i)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := f.dialTLS(ctx, i, conf)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := c.CloseWrite(); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			return err
		}
		ok.Add(1)
		return nil
	})
	return int(ok.Load()), err
}

func (f *childFleet) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.closers {
		c()
	}
	for _, s := range f.sockets {
		s.Close()
		s.Conn.Close()
	}
}
