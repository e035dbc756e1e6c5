package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h3Gateway is the UDP side of a fakeGateway: HTTP/3 with the same
// client-certificate check, answering through g.ServeHTTP (which records
// requests) unless extra handles the path.
type h3Gateway struct {
	g     *fakeGateway
	addr  string
	srv   *http3.Server
	ln    *quic.Listener
	tr    *quic.Transport
	extra http.Handler // when set, serves paths under /x/

	accepted atomic.Int32
	mu       sync.Mutex
	conns    []*quic.Conn
	wg       sync.WaitGroup
}

// startH3 serves HTTP/3 for g on pc until the test ends.
func (g *fakeGateway) startH3(t *testing.T, pc net.PacketConn, extra http.Handler) *h3Gateway {
	t.Helper()
	h := &h3Gateway{g: g, addr: pc.LocalAddr().String(), extra: extra, tr: &quic.Transport{Conn: pc}}
	conf := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{g.server.Cert},
		NextProtos:       []string{http3.NextProtoH3},
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: g.verify,
	}
	ln, err := h.tr.Listen(conf, &quic.Config{MaxIdleTimeout: hang})
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	h.srv = &http3.Server{Handler: h}
	h.wg.Go(h.accept)
	t.Cleanup(func() {
		h.srv.Close()
		h.ln.Close()
		h.mu.Lock()
		for _, c := range h.conns {
			c.CloseWithError(0, "")
		}
		h.mu.Unlock()
		h.wg.Wait()
		h.tr.Close()
		pc.Close()
	})
	return h
}

func (h *h3Gateway) accept() {
	for {
		conn, err := h.ln.Accept(context.Background())
		if err != nil {
			return
		}
		h.accepted.Add(1)
		h.mu.Lock()
		h.conns = append(h.conns, conn)
		h.mu.Unlock()
		h.wg.Go(func() { h.srv.ServeQUICConn(conn) })
	}
}

func (h *h3Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.extra != nil && len(r.URL.Path) > 3 && r.URL.Path[:3] == "/x/" {
		h.extra.ServeHTTP(w, r)
		return
	}
	h.g.ServeHTTP(w, r)
}

// lastConn returns the connection accepted last.
func (h *h3Gateway) lastConn() *quic.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) == 0 {
		return nil
	}
	return h.conns[len(h.conns)-1]
}

// udpOn binds UDP on the port of the TCP address addr, so that an agent
// dialing addr over QUIC finds it.
func udpOn(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatalf("UDP on the gateway's TCP port: %v", err)
	}
	return pc
}

// silentUDP is a UDP port that reads and drops everything: a gateway
// whose UDP is blocked. It counts what arrives.
type silentUDP struct {
	pc      *net.UDPConn
	packets atomic.Int32
	done    chan struct{}
}

func newSilentUDP(t *testing.T, pc *net.UDPConn) *silentUDP {
	s := &silentUDP{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.packets.Add(1)
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *silentUDP) close() {
	s.pc.Close()
	<-s.done
}
