package agent

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// dropFrom is a gateway socket that loses every datagram from one host:
// a path that does not answer. Without ReadMsgUDP, quic-go reads it
// through ReadFrom.
type dropFrom struct {
	net.PacketConn
	udp  *net.UDPConn
	host net.IP
}

func (d *dropFrom) SetReadBuffer(n int) error             { return d.udp.SetReadBuffer(n) }
func (d *dropFrom) SetWriteBuffer(n int) error            { return d.udp.SetWriteBuffer(n) }
func (d *dropFrom) SyscallConn() (syscall.RawConn, error) { return d.udp.SyscallConn() }

func (d *dropFrom) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := d.PacketConn.ReadFrom(b)
		if err != nil || !addr.(*net.UDPAddr).IP.Equal(d.host) {
			return n, addr, err
		}
	}
}

// gatedDownload serves /x/big: size pseudo-random bytes, the second half
// only once gate is closed.
func gatedDownload(size int, gate <-chan struct{}) (http.Handler, []byte) {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(data[:size/2])
		http.NewResponseController(w).Flush()
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		w.Write(data[size/2:])
	}), data
}

// TestRoam moves a download in flight to another local address on
// loopback, through the roamer's own path: a hint, a look at the route
// (here told what to answer), a probe, a switch. When the new path does
// not answer, the connection stays on its old one. Either way the
// download completes intact on the one connection the gateway accepted.
func TestRoam(t *testing.T) {
	for _, tc := range []struct {
		name   string
		to     string
		drop   bool // the gateway loses what comes from to
		moveTo string
	}{
		{"moves", "127.0.0.2", false, "127.0.0.2"},
		{"new path does not answer", "127.0.0.3", true, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(tc.to)}); err != nil {
				t.Skipf("no loopback address %s here: %v", tc.to, err)
			} else {
				c.Close()
			}
			g := newFakeGateway(t)
			gate := make(chan struct{})
			handler, data := gatedDownload(16<<20, gate)
			udp := udpOn(t, g.addr)
			var pc net.PacketConn = udp
			if tc.drop {
				pc = &dropFrom{PacketConn: udp, udp: udp, host: net.ParseIP(tc.to)}
			}
			h := g.startH3(t, pc, handler)
			core, logs := observer.New(zap.InfoLevel)
			a := g.quicAgent(t, TransportQUIC, func(c *Config) {
				c.Logger = zap.New(core)
				c.DialTimeout = time.Second // bounds the probe
			})
			c := a.Client()
			var to atomic.Pointer[net.UDPAddr]
			c.roam.source = func(remote *net.UDPAddr) (*net.UDPAddr, error) {
				if p := to.Load(); p != nil {
					return p, nil
				}
				return routeSource(remote)
			}

			resp, err := c.HTTPClient().Get("https://core.example/x/big")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := sha256.New()
			if _, err := io.CopyN(got, resp.Body, int64(len(data)/2)); err != nil {
				t.Fatal(err)
			}
			to.Store(&net.UDPAddr{IP: net.ParseIP(tc.to)})
			c.roam.hint()
			msg := "quic connection moved to a new path"
			if tc.drop {
				msg = "quic connection not moved: new path did not answer"
			}
			waitLog(t, logs, msg)
			close(gate)
			if _, err := io.Copy(got, resp.Body); err != nil {
				t.Fatalf("rest of the download: %v", err)
			}
			if want := sha256.Sum256(data); !bytes.Equal(got.Sum(nil), want[:]) {
				t.Fatal("download corrupted")
			}
			if n := h.accepted.Load(); n != 1 {
				t.Fatalf("gateway accepted %d connections, want 1", n)
			}
			if ip := h.lastConn().RemoteAddr().(*net.UDPAddr).IP.String(); ip != tc.moveTo {
				t.Fatalf("gateway sees the agent at %s, want %s", ip, tc.moveTo)
			}
			e := logs.FilterMessage(msg).All()[0].ContextMap()
			if old, _ := e["old_path"].(string); !bytes.HasPrefix([]byte(old), []byte("127.0.0.1:")) {
				t.Fatalf("logged %v, want the old path from 127.0.0.1", e)
			}
			resp.Body.Close()
			c.CloseIdleConnections()
		})
	}
}

// waitLog waits until msg is logged.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for logs.FilterMessage(msg).Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged; logs: %v", msg, logs.All())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
