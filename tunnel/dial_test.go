package tunnel_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// tlsServer serves TLS handshakes with conf on loopback until the test
// ends, holding each connection open without reading from it.
func tlsServer(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if conf == nil {
				continue // never handshakes
			}
			tc := tls.Server(c, conf)
			wg.Go(func() {
				tc.SetDeadline(time.Now().Add(hang))
				tc.Handshake()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestDial(t *testing.T) {
	srvConf, cliConf := tunneltest.TLSConfigs(t)
	t.Run("ok", func(t *testing.T) {
		addr := tlsServer(t, srvConf)
		s, err := tunnel.Dial(context.Background(), tunnel.DialConfig{Address: addr, TLS: cliConf})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.RemoteAddr().String() != addr || s.Transport() != tunnel.TransportTCP {
			t.Errorf("session to %v over %s", s.RemoteAddr(), s.Transport())
		}
	})
	t.Run("custom dialer", func(t *testing.T) {
		addr := tlsServer(t, srvConf)
		var dialed string
		s, err := tunnel.Dial(context.Background(), tunnel.DialConfig{
			Address: "gateway.example:443",
			TLS:     cliConf,
			Dialer: func(ctx context.Context, network, a string) (net.Conn, error) {
				dialed = network + " " + a
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if dialed != "tcp gateway.example:443" {
			t.Errorf("dialer called with %q", dialed)
		}
	})

	noALPN := srvConf.Clone()
	noALPN.NextProtos = nil
	otherALPN := srvConf.Clone()
	otherALPN.NextProtos = []string{"h2"}
	untrusted, _ := tunneltest.TLSConfigs(t)
	failures := []struct {
		name string
		srv  *tls.Config
		dc   func(dc *tunnel.DialConfig)
		want string
	}{
		{"server without ALPN", noALPN, nil, "did not accept the tunnel protocol"},
		{"server with other ALPN", otherALPN, nil, "tls handshake"},
		{"untrusted gateway", untrusted, nil, "tls handshake"},
		{"no TLS config", srvConf, func(dc *tunnel.DialConfig) { dc.TLS = nil }, "no TLS configuration"},
		{"bad session config", srvConf, func(dc *tunnel.DialConfig) { dc.Session.StreamWindow = 1 }, "stream_window"},
		{"nothing listening", nil, func(dc *tunnel.DialConfig) { dc.Address = closedAddr(t) }, "dial gateway"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			dc := tunnel.DialConfig{TLS: cliConf, Timeout: hang}
			if tt.srv != nil {
				dc.Address = tlsServer(t, tt.srv)
			}
			if tt.dc != nil {
				tt.dc(&dc)
			}
			s, err := tunnel.Dial(context.Background(), dc)
			if err == nil {
				s.Close()
				t.Fatal("dialed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}

	t.Run("handshake timeout", func(t *testing.T) {
		addr := tlsServer(t, nil)
		const timeout = 200 * time.Millisecond
		_, err := tunnel.Dial(context.Background(), tunnel.DialConfig{Address: addr, TLS: cliConf, Timeout: timeout})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		addr := tlsServer(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := tunnel.Dial(ctx, tunnel.DialConfig{Address: addr, TLS: cliConf}); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestHasALPN(t *testing.T) {
	for _, tt := range []struct {
		protos []string
		want   bool
	}{
		{nil, false},
		{[]string{"h2", "http/1.1"}, false},
		{[]string{"h2", tunnel.ALPN}, true},
		{[]string{tunnel.ALPN}, true},
	} {
		if got := tunnel.HasALPN(tt.protos); got != tt.want {
			t.Errorf("HasALPN(%q) = %v", tt.protos, got)
		}
	}
}

func TestConfig(t *testing.T) {
	d := tunnel.Config{}.WithDefaults()
	want := tunnel.Config{
		StreamWindow: 8 << 20, KeepAliveInterval: 5 * time.Second, WriteTimeout: 5 * time.Second,
		AcceptBacklog: 1024, StreamCloseTimeout: 5 * time.Minute,
		QUICMaxStreams: 10000, QUICConnectionWindow: 32 << 20, QUICHandshakeTimeout: 10 * time.Second,
	}
	if d.Logf != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("defaults %+v, want %+v", d, want)
	}
	set := tunnel.Config{StreamWindow: 1 << 20, KeepAliveInterval: time.Second, WriteTimeout: 2 * time.Second, AcceptBacklog: 10, StreamCloseTimeout: time.Minute,
		QUICMaxStreams: 50, QUICConnectionWindow: 3 << 20, QUICHandshakeTimeout: time.Second}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Errorf("WithDefaults changed set fields: %+v", got)
	}
	// The connection window follows the stream window.
	if got := (tunnel.Config{StreamWindow: 1 << 20}).WithDefaults().QUICConnectionWindow; got != 4<<20 {
		t.Errorf("QUICConnectionWindow for a 1 MiB stream window: %d, want 4 MiB", got)
	}

	tests := []struct {
		name  string
		cfg   tunnel.Config
		field string // "" when valid
	}{
		{"zero", tunnel.Config{}, ""},
		{"smallest window", tunnel.Config{StreamWindow: 256 << 10}, ""},
		{"largest window", tunnel.Config{StreamWindow: 1 << 30}, ""},
		{"window too small", tunnel.Config{StreamWindow: 256<<10 - 1}, "stream_window"},
		{"window too large", tunnel.Config{StreamWindow: 1<<30 + 1}, "stream_window"},
		{"negative window", tunnel.Config{StreamWindow: -1}, "stream_window"},
		{"negative keepalive", tunnel.Config{KeepAliveInterval: -1}, "keepalive_interval"},
		{"negative write timeout", tunnel.Config{WriteTimeout: -1}, "write_timeout"},
		{"negative backlog", tunnel.Config{AcceptBacklog: -1}, "accept_backlog"},
		{"negative close timeout", tunnel.Config{StreamCloseTimeout: -1}, "stream_close_timeout"},
		{"negative max streams", tunnel.Config{QUICMaxStreams: -1}, "quic_max_streams"},
		{"negative handshake timeout", tunnel.Config{QUICHandshakeTimeout: -1}, "quic_handshake_timeout"},
		{"connection window below the stream window", tunnel.Config{QUICConnectionWindow: 8<<20 - 1}, "quic_connection_window"},
		{"connection window below a set stream window", tunnel.Config{StreamWindow: 1 << 20, QUICConnectionWindow: 1<<20 - 1}, "quic_connection_window"},
		{"connection window too large", tunnel.Config{QUICConnectionWindow: 4<<30 + 1}, "quic_connection_window"},
		{"smallest connection window", tunnel.Config{StreamWindow: 256 << 10, QUICConnectionWindow: 256 << 10}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Errorf("valid config refused: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("got %v, want an error naming %s", err, tt.field)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			if s, err := tunnel.NewYamuxClient(a, tt.cfg); err == nil {
				s.Close()
				t.Error("NewYamuxClient took an invalid config")
			}
			if s, err := tunnel.NewYamuxServer(b, tt.cfg); err == nil {
				s.Close()
				t.Error("NewYamuxServer took an invalid config")
			}
		})
	}
}

// TestConfigLogf checks that the transport's diagnostics reach Logf: a
// peer speaking garbage ends the session with a logged reason.
func TestConfigLogf(t *testing.T) {
	var mu sync.Mutex
	var logs []string
	a, b := net.Pipe()
	defer b.Close()
	s, err := tunnel.NewYamuxServer(a, tunnel.Config{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, format)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wrote := tunneltest.Async(func() (int, error) { return b.Write([]byte("GET / HTTP/1.1\r\n\r\n")) })
	waitClosed(t, s.Done(), "session fed garbage")
	tunneltest.Await(t, wrote, "write garbage")
	mu.Lock()
	defer mu.Unlock()
	if len(logs) == 0 {
		t.Error("nothing logged")
	}
}
