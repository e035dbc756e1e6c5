package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/tunnel"
)

// QUICConfig configures the gateway's UDP side.
type QUICConfig struct {
	// Listen is the UDP address agents reach with HTTP/3 (same TLS and
	// limits as TCP; the TCP port advertises it with Alt-Svc). In config
	// files the default is ":443"; in the Go API empty means none. "off":
	// none.
	Listen string `yaml:"listen"`
	// TunnelListen is the UDP address of connectors' QUIC tunnels, apart
	// from the agents' because QUIC transport parameters are chosen before
	// the TLS hello. In config files the default is ":4443"; empty or
	// "off": none.
	TunnelListen string `yaml:"tunnel_listen"`
	// AltSvcPort is the port advertised to agents in Alt-Svc, when a port
	// forward sits in front. Default the Listen port.
	AltSvcPort int `yaml:"alt_svc_port"`
	// StatelessResetKeyFile holds the key (64 hex digits) with which the
	// gateway answers a packet of an HTTP/3 connection it does not know
	// with a stateless reset, so that an agent whose gateway restarted
	// (or moved to another replica sharing the file) learns it from its
	// next request instead of waiting for its idle timeout. Created, with
	// a random key, when it does not exist. Empty: no stateless resets.
	StatelessResetKeyFile string `yaml:"stateless_reset_key_file"`

	// Conn and TunnelConn, when set, are used instead of listening.
	Conn       net.PacketConn `yaml:"-"`
	TunnelConn net.PacketConn `yaml:"-"`
}

func udpOn(addr string, conn net.PacketConn) (net.PacketConn, error) {
	if conn != nil {
		return conn, nil
	}
	if addr == "" || addr == "off" {
		return nil, nil
	}
	return net.ListenPacket("udp", addr)
}

// listenQUIC opens the UDP sockets and warns once when the kernel keeps
// their buffers small (quic-go then loses throughput).
func (s *Server) listenQUIC() (agents, tunnels net.PacketConn, err error) {
	q := s.cfg.QUIC
	if agents, err = udpOn(q.Listen, q.Conn); err != nil {
		return nil, nil, fmt.Errorf("quic.listen: %w", err)
	}
	if tunnels, err = udpOn(q.TunnelListen, q.TunnelConn); err != nil {
		if agents != nil {
			agents.Close()
		}
		return nil, nil, fmt.Errorf("quic.tunnel_listen: %w", err)
	}
	if agents != nil && q.StatelessResetKeyFile != "" {
		if s.resetKey, err = loadResetKey(q.StatelessResetKeyFile); err != nil {
			agents.Close()
			if tunnels != nil {
				tunnels.Close()
			}
			return nil, nil, err
		}
	}
	for _, pc := range []net.PacketConn{agents, tunnels} {
		if u, ok := pc.(*net.UDPConn); ok {
			if w := tunnel.CheckUDPBuffers(u); w != "" {
				s.log.Warn("UDP socket buffers are small", zap.String("addr", u.LocalAddr().String()), zap.String("fix", w))
			}
		}
	}
	return agents, tunnels, nil
}

// altSvcFor is the Alt-Svc header value advertising HTTP/3, or "".
func (s *Server) altSvcFor(pc net.PacketConn) string {
	if pc == nil {
		return ""
	}
	port := s.cfg.QUIC.AltSvcPort
	if port == 0 {
		port = pc.LocalAddr().(*net.UDPAddr).Port
	}
	return `h3=":` + strconv.Itoa(port) + `"; ma=86400`
}

// agentQUICConfig sizes agents' QUIC connections: streams bounded like
// HTTP/2 concurrent streams, idle like TCP, no 0-RTT.
func (s *Server) agentQUICConfig() *quic.Config {
	l := s.cfg.Limits
	return &quic.Config{
		HandshakeIdleTimeout:           l.HandshakeTimeout / 2, // quic-go allows twice this
		MaxIdleTimeout:                 l.IdleTimeout,
		MaxIncomingStreams:             int64(l.MaxRequestsPerDevice),
		MaxIncomingUniStreams:          16,
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         4 << 20,
		InitialConnectionReceiveWindow: 1 << 20,
		MaxConnectionReceiveWindow:     8 << 20,
		Allow0RTT:                      false,
	}
}

// serveH3 serves agents over HTTP/3 until ctx ends.
func (s *Server) serveH3(ctx context.Context, pc net.PacketConn, h3 *http3.Server) error {
	tr := &quic.Transport{Conn: pc, ConnContext: s.refuseWhileDraining, StatelessResetKey: s.resetKey}
	defer tr.Close()
	conf := s.agents.Clone()
	conf.NextProtos = []string{http3.NextProtoH3}
	conf.GetConfigForClient = s.h3ConfigForClient(conf)
	ln, err := tr.Listen(conf, s.agentQUICConfig())
	if err != nil {
		return fmt.Errorf("quic.listen: %w", err)
	}
	defer ln.Close()
	s.log.Info("agents over HTTP/3", zap.String("addr", pc.LocalAddr().String()))
	// quic-go refuses a connection whose handshake is done when 32 wait
	// to be accepted, throwing the handshake away. Under a reconnect storm
	// one accepting goroutine, starved of CPU by the handshakes, lets that
	// happen: several accept, and each only hands the connection on.
	actx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, h3Acceptors)
	for range h3Acceptors {
		go func() {
			err := s.acceptH3(actx, ln, h3)
			stop() // one ends: all end
			errs <- err
		}()
	}
	var first error
	for range h3Acceptors {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// h3Acceptors is how many goroutines accept agents' QUIC connections.
const h3Acceptors = 4

// acceptH3 accepts agents' QUIC connections until ctx ends, each served
// by a goroutine of its own.
func (s *Server) acceptH3(ctx context.Context, ln *quic.Listener, h3 *http3.Server) error {
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return err
		}
		s.wg.Go(func() {
			s.metrics.handshakes.WithLabelValues("agent", "ok", "").Inc()
			s.h3Conns.Store(conn, newConnInfo())
			s.trackAgent(conn, quicAgent{conn})
			context.AfterFunc(conn.Context(), func() {
				s.forgetAgent(conn)
				s.h3Conns.Delete(conn)
			})
			h3.ServeQUICConn(conn)
			// A connection the draining server did not take is ours to close.
			conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
		})
	}
}

// errDraining refuses a new agent connection while the gateway drains.
var errDraining = errors.New("gateway draining")

// refuseWhileDraining turns new agent connections away with
// CONNECTION_REFUSED, before any handshake work, once Shutdown began. The
// UDP port cannot be handed to the next gateway process while this one
// drains (the connections being drained use it), so an agent is better
// told at once to come back later than accepted by a server that will
// not serve it.
func (s *Server) refuseWhileDraining(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	if s.draining.Load() {
		return nil, errDraining
	}
	return ctx, nil
}

// h3IdleGrace is how long an HTTP/3 connection must have had no request
// in the handler before a draining gateway closes it: a request the agent
// sent just before the GOAWAY may still be on its way.
const h3IdleGrace = 500 * time.Millisecond

// closeIdleH3 closes, until stop or ctx ends, the HTTP/3 connections that
// are idle, after Shutdown sent them GOAWAY: an idle agent need not act on
// GOAWAY, and the drain would otherwise last the whole shutdown timeout.
// A connection still serving requests is closed once they are done.
func (s *Server) closeIdleH3(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(h3IdleGrace / 5)
	defer tick.Stop()
	for {
		select { // a tick first: GOAWAY goes out before any close
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		s.h3Conns.Range(func(k, v any) bool {
			if ci := v.(*connInfo); ci.idleFor(h3IdleGrace, now) && ci.closing.CompareAndSwap(false, true) {
				// CloseWithError waits for the connection's loop: one
				// goroutine each, so that thousands close together.
				s.wg.Go(func() {
					k.(*quic.Conn).CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "gateway shutting down")
				})
			}
			return true
		})
	}
}

// h3ConfigForClient gives each QUIC handshake a policy whose refusal is
// logged with the peer's address, like TCP handshakes.
func (s *Server) h3ConfigForClient(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		remote := "unknown"
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			err := s.verifyAgent(cs)
			if err != nil {
				s.refusedAddr(remote, "agent", refusalReason(err), err)
			}
			return err
		}
		return c, nil
	}
}

// newH3Server builds the HTTP/3 server with the agent-facing limits.
func (s *Server) newH3Server() *http3.Server {
	l := s.cfg.Limits
	return &http3.Server{
		Handler: &handler{s: s}, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			if ci, ok := s.h3Conns.Load(c); ok {
				return context.WithValue(ctx, connInfoKey{}, ci)
			}
			return withConnInfo(ctx, nil)
		},
	}
}

// serveQUICTunnels accepts connectors' QUIC sessions until ctx ends.
func (s *Server) serveQUICTunnels(ctx context.Context, pc net.PacketConn) error {
	ln, err := tunnel.ListenQUIC(pc, s.tunnels, s.cfg.Tunnel)
	if err != nil {
		return fmt.Errorf("quic.tunnel_listen: %w", err)
	}
	defer ln.Close()
	s.log.Info("connector tunnels over QUIC", zap.String("addr", pc.LocalAddr().String()))
	for {
		sess, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("accept QUIC tunnel", zap.Error(err))
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		cs, _ := tunnel.ConnectionState(sess)
		s.metrics.handshakes.WithLabelValues("connector", "ok", "").Inc()
		s.wg.Go(func() { s.serveSession(ctx, sess, auth.PinOfCert(cs.PeerCertificates[0]), func() {}) })
	}
}

// loadResetKey reads the stateless reset key from path, or creates the
// file with a random key (mode 0600) when there is none. The key must stay
// the same across restarts: a reset is only recognised by the agent when
// it matches the token of the process that made the connection.
func loadResetKey(path string) (*quic.StatelessResetKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var key quic.StatelessResetKey
		rand.Read(key[:])
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("quic.stateless_reset_key_file: %w", err)
		}
		_, err = fmt.Fprintf(f, "%x\n", key[:])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("quic.stateless_reset_key_file: %w", err)
		}
		return &key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("quic.stateless_reset_key_file: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != len(quic.StatelessResetKey{}) {
		return nil, fmt.Errorf("quic.stateless_reset_key_file %s: want %d hex digits", path, 2*len(quic.StatelessResetKey{}))
	}
	var key quic.StatelessResetKey
	copy(key[:], raw)
	return &key, nil
}
