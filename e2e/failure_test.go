package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"hash"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// TestConnectorLost cuts or freezes the link between connector and gateway
// without a goodbye. The tenant's agents must get 503 with Retry-After (not
// handshake failures, not hangs), and requests must succeed again once the
// link is back, with no gateway restart.
func TestConnectorLost(t *testing.T) {
	for _, mode := range []string{"cut", "freeze"} {
		t.Run(mode, func(t *testing.T) {
			acme := newTenant(t, "acme")
			w := startGateway(t, func(c *gateway.Config) {
				c.Tunnel.KeepAliveInterval = 250 * time.Millisecond
				c.Tunnel.WriteTimeout = 250 * time.Millisecond
			}, acme)
			core := startCore(t, echoHeaders)
			px := startProxy(t, w.addr)
			w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
				func(c *connector.Config) {
					c.Gateways[0].Address = px.addr()
					c.Tunnel.KeepAliveInterval = 250 * time.Millisecond
					c.Tunnel.WriteTimeout = 250 * time.Millisecond
				})
			w.waitServed(t, "acme", 2)
			cert := certstest.Agent(t, acme.ca, "pc-1")
			client := w.agent(&cert, true)
			if code, _ := status(t, client, w.url("/x")); code != 200 {
				t.Fatalf("before: status %d", code)
			}

			lost := time.Now()
			if mode == "cut" {
				px.cut()
			} else {
				px.freeze()
			}
			waitFor(t, "503 while the connector is gone", func() bool {
				code, retry := status(t, client, w.url("/x"))
				return code == 503 && retry != ""
			})
			detect := time.Since(lost)
			// Once detected, the answer is immediate and keeps coming.
			for range 5 {
				start := time.Now()
				code, retry := status(t, client, w.url("/x"))
				if code != 503 || retry == "" {
					t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", code, retry)
				}
				if s, err := strconv.Atoi(retry); err != nil || s < 1 {
					t.Fatalf("Retry-After %q is not a positive number of seconds", retry)
				}
				if d := time.Since(start); d > hangGuard/2 {
					t.Fatalf("503 took %v", d)
				}
			}

			back := time.Now()
			if mode == "cut" {
				px.restore()
			} else {
				px.thaw()
			}
			waitFor(t, "requests to succeed again", func() bool {
				code, _ := status(t, client, w.url("/x"))
				return code == 200
			})
			t.Logf("figure: %s: 503 after %v, served again %v after the link came back",
				mode, detect.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
		})
	}
}

// status makes one GET and returns the status code and Retry-After.
func status(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// bigPayload serves n deterministic bytes at /big and hashes uploads at /up.
func bigPayload(n int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.Copy(rw, io.LimitReader(newPattern(), n))
	})
	mux.HandleFunc("/up", func(rw http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		k, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(rw, err.Error(), 500)
			return
		}
		rw.Header().Set("X-Bytes", strconv.FormatInt(k, 10))
		rw.Write(h.Sum(nil))
	})
	return mux
}

func TestLargeTransferIntact(t *testing.T) {
	down, up := 256<<20, 64<<20
	if raceEnabled {
		down, up = 64<<20, 16<<20
	}
	acme := newTenant(t, "acme")
	w, _ := served(t, acme, bigPayload(int64(down)))
	cert := certstest.Agent(t, acme.ca, "pc-1")

	resp, err := w.agent(&cert, true).Get(w.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	if err != nil || n != int64(down) {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(newPattern(), int64(down)))
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("download differs from what the core sent")
	}

	resp, err = w.agent(&cert, false).Post(w.url("/up"), "application/octet-stream", io.LimitReader(newPattern(), int64(up)))
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want.Reset()
	io.Copy(want, io.LimitReader(newPattern(), int64(up)))
	if resp.Header.Get("X-Bytes") != strconv.Itoa(up) || string(sum) != string(want.Sum(nil)) {
		t.Fatalf("upload: core saw %s bytes, digest match %v", resp.Header.Get("X-Bytes"), string(sum) == string(want.Sum(nil)))
	}
}

// TestShutdownDrainsDownload stops the gateway while a large download is
// in flight: new connections are refused at once, the download completes
// intact, then Shutdown returns.
func TestShutdownDrainsDownload(t *testing.T) {
	const size = 64 << 20
	acme := newTenant(t, "acme")
	gate := make(chan struct{})
	w, _ := served(t, acme, halfThenWait(size, gate))
	cert := certstest.Agent(t, acme.ca, "pc-1")
	resp, err := w.agent(&cert, false).Get(w.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := sha256.New()
	if _, err := io.CopyN(got, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- w.gw.Shutdown(ctx) }()
	waitFor(t, "the listener to close", func() bool {
		resp, err := w.agent(&cert, false).Get(w.url("/api"))
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a download in flight: %v", err)
	default:
	}
	close(gate)
	finishPattern(t, got, resp.Body, 1<<20, size)
	resp.Body.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// halfThenWait is a core that serves size pattern bytes at /big: half at
// once, the rest when gate closes, so that the download is surely in
// flight (not sitting in socket buffers) while the test acts. Other paths
// get an empty answer at once.
func halfThenWait(size int64, gate <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			return
		}
		rw.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		src := newPattern()
		io.Copy(rw, io.LimitReader(src, size/2))
		rw.(http.Flusher).Flush()
		<-gate
		io.Copy(rw, io.LimitReader(src, size-size/2))
	})
}

// finishPattern reads the rest of a pattern download of size bytes, of
// which got has hashed the first done, and checks it whole.
func finishPattern(t *testing.T, got hash.Hash, body io.Reader, done, size int64) {
	t.Helper()
	if n, err := io.Copy(got, body); err != nil || done+n != size {
		t.Fatalf("rest of the download: %d bytes, %v", n, err)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(newPattern(), size))
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the download differs")
	}
}

// pattern is an endless deterministic byte source.
type pattern struct{ off int64 }

func newPattern() *pattern { return &pattern{} }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.off*31 + p.off>>9)
		p.off++
	}
	return len(b), nil
}

// TestAbandonedDownloadStopsCore: an agent that walks away from a download
// frees the core at once: the connector closes its connection to the core
// instead of buffering into a stream nobody reads.
func TestAbandonedDownloadStopsCore(t *testing.T) {
	acme := newTenant(t, "acme")
	stopped := make(chan time.Time, 1)
	w, _ := served(t, acme, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := rw.Write(buf); err != nil {
				stopped <- time.Now()
				return
			}
		}
	}))
	cert := certstest.Agent(t, acme.ca, "pc-1")
	client := w.agent(&cert, false)
	resp, err := client.Get(w.url("/endless"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	resp.Body.Close()
	client.Transport.(*http.Transport).CloseIdleConnections()
	select {
	case at := <-stopped:
		t.Logf("figure: the core stopped writing %v after the agent left", at.Sub(left).Round(time.Millisecond))
	case <-time.After(hangGuard):
		t.Fatal("the core is still sending a download nobody reads")
	}
}
