package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/internal/proxyproto"
)

// tcpService is a raw TCP service: it reads an optional PROXY header,
// then echoes upper-cased bytes and remembers who connected.
type tcpService struct {
	ln      net.Listener
	proxy   bool
	mu      sync.Mutex
	devices []string
	conns   int
}

func startTCPService(t *testing.T, proxy bool) *tcpService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpService{ln: ln, proxy: proxy}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c) })
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

func (s *tcpService) serve(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	r := bufio.NewReader(c)
	if s.proxy {
		h, err := proxyproto.ReadHeader(r)
		if err != nil {
			return
		}
		for _, tlv := range h.TLVs {
			if tlv.Type == connector.TLVDeviceID {
				s.mu.Lock()
				s.devices = append(s.devices, string(tlv.Value))
				s.mu.Unlock()
			}
		}
	}
	b, _ := io.ReadAll(r) // until the client half-closes
	c.Write([]byte(strings.ToUpper(string(b))))
}

// connectH1 sends CONNECT target over HTTP/1.1 and returns the status and
// the connection.
func connectH1(t *testing.T, w *world, cert *tls.Certificate, target string) (int, *tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.Dial("tcp", w.addr, &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost",
		Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, c, br
}

func TestConnectServices(t *testing.T) {
	acme := newTenant(t, "acme")
	w := startGateway(t, nil, acme)
	rc := startTCPService(t, true)
	vnc := startTCPService(t, false)
	core := startCore(t, echoHeaders)
	w.startConnector(t, acme, []connector.ServiceConfig{
		{Name: "core", PathPrefix: "/", Address: core.addr()},
		{Name: "remote-control", Connect: true, ProxyProtocol: true, Address: rc.ln.Addr().String()},
		{Name: "vnc", Connect: true, Groups: []string{"helpdesk"}, Address: vnc.ln.Addr().String()},
	}, nil)
	w.waitServed(t, "acme", 2)
	cert := certstest.Agent(t, acme.ca, "pc-7")

	t.Run("declared service, HTTP/1.1, half-close, PROXY v2", func(t *testing.T) {
		code, c, br := connectH1(t, w, &cert, "remote-control:5900")
		if code != 200 {
			t.Fatalf("CONNECT status %d", code)
		}
		c.Write([]byte("hello through the tunnel"))
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(hangGuard))
		got, err := io.ReadAll(br)
		if err != nil || string(got) != "HELLO THROUGH THE TUNNEL" {
			t.Fatalf("echo %q, %v", got, err)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if len(rc.devices) != 1 || rc.devices[0] != "pc-7" {
			t.Fatalf("the service learned devices %v, want [pc-7]", rc.devices)
		}
	})
	t.Run("declared service, HTTP/2", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodConnect, w.url(""), pr)
		req.Host = "remote-control:5900"
		resp, err := w.agent(&cert, true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("status %d proto %s", resp.StatusCode, resp.Proto)
		}
		pw.Write([]byte("over h2"))
		pw.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != "OVER H2" {
			t.Fatalf("echo %q, %v", got, err)
		}
	})
	refusals := []struct {
		name, target string
		want         int
	}{
		{"undeclared service", "ssh:22", 404},
		{"raw address", rc.ln.Addr().String(), 404},
		{"loopback by name", "localhost:22", 404},
		{"HTTP service", "core:80", 404},
		{"service restricted to groups, groups unknown", "vnc:5900", 403},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			code, _, _ := connectH1(t, w, &cert, r.target)
			if code != r.want {
				t.Fatalf("CONNECT %s: status %d, want %d", r.target, code, r.want)
			}
		})
	}
	vnc.mu.Lock()
	defer vnc.mu.Unlock()
	if vnc.conns != 0 {
		t.Fatalf("the restricted service was dialed %d times", vnc.conns)
	}
}
