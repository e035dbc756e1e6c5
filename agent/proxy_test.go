package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// proxyAgent runs an agent whose HTTP proxy maps core.example:5900 to the
// echo service, and returns the proxy's address.
func proxyAgent(t *testing.T, g *fakeGateway) string {
	t.Helper()
	a := g.newAgent(t, func(c *Config) {
		c.HTTPProxy = HTTPProxyConfig{Listen: "127.0.0.1:0", ConnectServices: map[string]string{"core.example:5900": "echo"}}
	})
	runAgent(t, a)
	return a.Status().Listeners[0]
}

// proxiedClient is an HTTP client that uses the proxy at addr.
func proxiedClient(t *testing.T, addr string) *http.Client {
	u, err := url.Parse("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: hang}
}

func TestProxyHTTP(t *testing.T) {
	g := newFakeGateway(t)
	client := proxiedClient(t, proxyAgent(t, g))
	for i, tc := range []struct {
		name, method, url, body string
		wantHost, wantURI       string
	}{
		{"get", http.MethodGet, "http://core.example/api/policy?pc=42&x=%2F", "", "core.example", "/api/policy?pc=42&x=%2F"},
		{"post with body", http.MethodPost, "http://inventory.example:8080/upload", "inventory data", "inventory.example:8080", "/upload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
			req.Header.Set("Proxy-Connection", "keep-alive")
			req.Header.Set("Proxy-Custom", "x")
			req.Header.Set("X-Core", "kept")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Gateway") != "fake" || !strings.HasPrefix(string(body), "gateway saw") {
				t.Fatalf("answer %d %v %q", resp.StatusCode, resp.Header, body)
			}
			seen := g.seenRequests()
			if len(seen) != i+1 {
				t.Fatalf("gateway saw %d requests, want %d", len(seen), i+1)
			}
			r := seen[i]
			if r.method != tc.method || r.host != tc.wantHost || r.uri != tc.wantURI || r.body != tc.body || r.header.Get("X-Core") != "kept" {
				t.Fatalf("gateway saw %s %s %s body %q headers %v", r.method, r.host, r.uri, r.body, r.header)
			}
			for k := range r.header {
				if strings.HasPrefix(k, "Proxy-") {
					t.Errorf("gateway saw header %s", k)
				}
			}
		})
	}
}

// TestProxyStreams checks that bodies stream through the proxy both ways:
// each half of these exchanges waits for the other to have seen the first
// part, which would hang if the proxy held a body back.
func TestProxyStreams(t *testing.T) {
	g := newFakeGateway(t)
	client := proxiedClient(t, proxyAgent(t, g))

	resp, err := client.Get("http://core.example/stream-down")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	g.streamGate <- struct{}{}
	if rest, err := io.ReadAll(br); string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	resp.Body.Close()

	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("part1"))
		select {
		case <-g.streamGate:
			pw.Write([]byte("part2"))
			pw.Close()
		case <-time.After(hang):
			pw.CloseWithError(fmt.Errorf("gateway did not see the first part"))
		}
	}()
	resp, err = client.Post("http://core.example/stream-up", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if seen := g.seenRequests(); seen[len(seen)-1].body != "part1part2" {
		t.Fatalf("gateway saw body %q", seen[len(seen)-1].body)
	}
}

// connectVia sends CONNECT target to the proxy at addr and returns the
// connection and the answer.
func connectVia(t *testing.T, addr, target string) (net.Conn, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(hang))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return withBuffered(conn, br), resp
}

func TestProxyConnect(t *testing.T) {
	g := newFakeGateway(t)
	addr := proxyAgent(t, g)
	for _, tc := range []struct {
		name, target string
		want         int
	}{
		{"mapped host:port", "core.example:5900", http.StatusOK},
		{"mapped, other case", "CORE.example:5900", http.StatusOK},
		{"service name as host", "echo:443", http.StatusOK},
		{"service the gateway forbids", "other:22", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp := connectVia(t, addr, tc.target)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK {
				echoRoundTrip(t, conn, []byte("remote control bytes"))
			}
		})
	}
}

// TestProxyConnectUnmapped checks that a CONNECT to anything that is not a
// service is refused without a connection to it, nor even to the gateway.
func TestProxyConnectUnmapped(t *testing.T) {
	g := newFakeGateway(t)
	addr := proxyAgent(t, g)
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	_, resp := connectVia(t, addr, target.Addr().String())
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not a sekisho service") {
		t.Fatalf("answer %d %q, want 403 not a sekisho service", resp.StatusCode, body)
	}
	if c := g.seenConnects(); len(c) != 0 {
		t.Fatalf("gateway saw %+v", c)
	}
	target.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := target.Accept(); err == nil {
		c.Close()
		t.Fatal("the proxy connected to the target")
	}
}

func TestProxyOriginForm(t *testing.T) {
	g := newFakeGateway(t)
	addr := proxyAgent(t, g)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: hang}).Get("http://" + addr + "/api/policy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || len(g.seenRequests()) != 0 {
		t.Fatalf("status %d, want 400 and nothing sent", resp.StatusCode)
	}
}
