package loadgen

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/tunnel"
)

// restartable is a gateway stand-in that can be stopped (closing every
// connection, as a restarting process does) and started again on the same
// address.
type restartable struct {
	t       *testing.T
	quic    bool
	addr    string
	conf    *tls.Config
	devices sync.Map // device id -> true, since the last start
	served  atomic.Int64
	stop    func()
}

func newRestartable(t *testing.T, overQUIC bool, conf *tls.Config) *restartable {
	r := &restartable{t: t, quic: overQUIC, addr: "127.0.0.1:0", conf: conf}
	r.start()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *restartable) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, err := auth.PrincipalOf(req.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, "no identity", http.StatusForbidden)
			return
		}
		r.devices.Store(p.DeviceID, true)
		r.served.Add(1)
		w.Write([]byte("ok"))
	})
}

func (r *restartable) start() {
	r.devices.Clear()
	if r.quic {
		pc, err := net.ListenPacket("udp", r.addr)
		if err != nil {
			r.t.Fatal(err)
		}
		r.addr = pc.LocalAddr().String()
		conf := r.conf.Clone()
		conf.NextProtos = []string{http3.NextProtoH3}
		srv := &http3.Server{Handler: r.handler(), TLSConfig: conf}
		done := make(chan struct{})
		go func() { srv.Serve(pc); close(done) }()
		r.stop = func() { srv.Close(); pc.Close(); <-done }
		return
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := &http.Server{Handler: r.handler(), TLSConfig: r.conf.Clone(), ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { srv.ServeTLS(ln, "", ""); close(done) }()
	r.stop = func() { srv.Close(); <-done }
}

// waitDevices waits until the gateway has served n devices since its
// last start, or a few seconds have passed.
func waitDevices(r *restartable, n int) {
	for deadline := time.Now().Add(5 * time.Second); r.deviceCount() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *restartable) deviceCount() int {
	n := 0
	r.devices.Range(func(any, any) bool { n++; return true })
	return n
}

// After a restart every agent comes back, over each transport, and none
// gives up while the gateway is away.
func TestReconnectAfterRestart(t *testing.T) {
	for _, tt := range []struct {
		name      string
		transport string
		h2        bool
	}{{"h1", "tcp", false}, {"h2", "tcp", true}, {"h3", "quic", false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const agents = 20
			ca, srv, conf := gatewayPKI(t)
			gw := newRestartable(t, tt.transport == "quic", conf)
			addr := gw.addr
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() {
				// Restart once every agent is in, stay away for a while,
				// and end the run once all are back.
				waitDevices(gw, agents)
				time.Sleep(50 * time.Millisecond) // the last answers reach their agents
				gw.stop()
				time.Sleep(150 * time.Millisecond)
				gw.start()
				waitDevices(gw, agents)
				time.Sleep(100 * time.Millisecond)
				cancel()
			})
			sum, err := Run(ctx, Config{
				Target: addr, ServerName: "localhost", RootCAs: srv.Roots, CA: ca,
				Transport: tt.transport, HTTP2: tt.h2, Agents: agents, Duration: 10 * time.Second,
				KeepAlive: -1, Reconnect: true,
				ReconnectBackoff: tunnel.Backoff{Min: 20 * time.Millisecond, Max: 80 * time.Millisecond},
			})
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if sum.Connected != agents || sum.Lost != agents || sum.Reconnected != agents || sum.StillDown != 0 {
				t.Fatalf("connected %d, lost %d, back %d, still away %d; want %d, %d, %d, 0 (%v)",
					sum.Connected, sum.Lost, sum.Reconnected, sum.StillDown, agents, agents, agents, sum.FirstErrors)
			}
			// Over TCP an attempt while the gateway is away is refused at
			// once; a QUIC handshake keeps resending its first packet and
			// completes when the gateway is back.
			if tt.transport == "tcp" && sum.ReconnectFailed == 0 {
				t.Error("no attempt failed while the gateway was away")
			}
			if n := gw.deviceCount(); n != agents {
				t.Errorf("the restarted gateway saw %d devices, want %d", n, agents)
			}
			// Each came back after the 150 ms away, and not long after.
			if sum.ReconnectP50ms < 100 || sum.ReconnectMaxms > 5000 || !sum.LastBack.After(sum.FirstLost) {
				t.Errorf("reconnect p50 %.0f ms, max %.0f ms, first loss %v, last back %v",
					sum.ReconnectP50ms, sum.ReconnectMaxms, sum.FirstLost, sum.LastBack)
			}
		})
	}
}

// Agents without Reconnect stay away after a restart (until their next
// request): the loss is counted, nothing comes back.
func TestNoReconnectByDefault(t *testing.T) {
	ca, srv, conf := gatewayPKI(t)
	gw := newRestartable(t, false, conf)
	addr := gw.addr
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		waitDevices(gw, 5)
		time.Sleep(50 * time.Millisecond)
		gw.stop()
		gw.start()
	})
	sum, err := Run(context.Background(), Config{
		Target: addr, ServerName: "localhost", RootCAs: srv.Roots, CA: ca,
		Agents: 5, Duration: 300 * time.Millisecond, KeepAlive: -1,
	})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Connected != 5 || sum.Reconnected != 0 || gw.deviceCount() != 0 {
		t.Fatalf("connected %d, back %d, devices after restart %d; want 5, 0, 0", sum.Connected, sum.Reconnected, gw.deviceCount())
	}
}

// FirstAgent numbers the devices, so that several processes make distinct
// ones.
func TestFirstAgentNumbersDevices(t *testing.T) {
	ca, srv, conf := gatewayPKI(t)
	gw := newRestartable(t, false, conf)
	sum, err := Run(context.Background(), Config{
		Target: gw.addr, ServerName: "localhost", RootCAs: srv.Roots, CA: ca,
		Agents: 3, FirstAgent: 500, Duration: time.Millisecond, KeepAlive: -1,
	})
	if err != nil || sum.Connected != 3 {
		t.Fatalf("connected %d, %v", sum.Connected, err)
	}
	for _, id := range []string{"load-000500", "load-000501", "load-000502"} {
		if _, ok := gw.devices.Load(id); !ok {
			t.Errorf("device %s not seen", id)
		}
	}
}

// With Reconnect an agent whose first connect fails retries it until the
// gateway answers; without, it is counted as failed at once.
func TestConnectRetriedWithReconnect(t *testing.T) {
	for _, reconnect := range []bool{false, true} {
		ca, srv, conf := gatewayPKI(t)
		gw := newRestartable(t, false, conf)
		addr := gw.addr
		gw.stop() // away when the agents start
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(150 * time.Millisecond)
			gw.start()
		})
		sum, err := Run(context.Background(), Config{
			Target: addr, ServerName: "localhost", RootCAs: srv.Roots, CA: ca,
			Agents: 10, Duration: time.Millisecond, KeepAlive: -1, Reconnect: reconnect,
			ReconnectBackoff: tunnel.Backoff{Min: 20 * time.Millisecond, Max: 80 * time.Millisecond},
		})
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool][2]int64{false: {0, 10}, true: {10, 0}}[reconnect]
		if sum.Connected != want[0] || sum.ConnectFailed != want[1] {
			t.Errorf("reconnect=%v: connected %d, failed %d; want %d, %d", reconnect, sum.Connected, sum.ConnectFailed, want[0], want[1])
		}
		if reconnect && (sum.ConnectRetries < 10 || sum.Errors["connect_retry_network"] != sum.ConnectRetries) {
			t.Errorf("retried attempts %d (%v), want at least one per agent, all refused", sum.ConnectRetries, sum.Errors)
		}
	}
}

// Agents keep alive from the moment they connect: a slow ramp does not
// leave the first ones silent until it ends.
func TestKeepAliveDuringRamp(t *testing.T) {
	ca, srv, conf := gatewayPKI(t)
	gw := newRestartable(t, false, conf)
	sum, err := Run(context.Background(), Config{
		Target: gw.addr, ServerName: "localhost", RootCAs: srv.Roots, CA: ca,
		Agents: 6, ConnectRate: 10, Duration: time.Millisecond, KeepAlive: 50 * time.Millisecond,
	})
	if err != nil || sum.Connected != 6 {
		t.Fatalf("connected %d, %v", sum.Connected, err)
	}
	// A 0.5 s ramp: the first agents send several keepalives during it.
	if sum.Requests < 10 || gw.served.Load() != 6+sum.Requests {
		t.Errorf("%d keepalives during the ramp (server saw %d requests), want at least 10", sum.Requests, gw.served.Load())
	}
}

// An attempt that timed out is retried on a new connection: the gateway
// may have forgotten the old one (over QUIC, without telling the agent).
func TestTimedOutAttemptDialsAgain(t *testing.T) {
	ca, srv, conf := gatewayPKI(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns, requests atomic.Int64
	release := make(chan struct{})
	h3 := &http3.Server{
		TLSConfig:   http3.ConfigureTLSConfig(conf),
		ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context { conns.Add(1); return ctx },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if requests.Add(1) == 1 {
				select { // the first request is never answered in time
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			w.Write([]byte("ok"))
		}),
	}
	done := make(chan struct{})
	go func() { h3.Serve(pc); close(done) }()
	defer func() { close(release); h3.Close(); pc.Close(); <-done }()
	sum, err := Run(context.Background(), Config{
		Target: pc.LocalAddr().String(), ServerName: "localhost", RootCAs: srv.Roots, CA: ca, Transport: "quic",
		Agents: 1, Duration: time.Millisecond, KeepAlive: -1, Reconnect: true, RequestTimeout: 200 * time.Millisecond,
		ReconnectBackoff: tunnel.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond},
	})
	if err != nil || sum.Connected != 1 || sum.ConnectRetries != 1 {
		t.Fatalf("connected %d, retried %d, %v", sum.Connected, sum.ConnectRetries, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("the server saw %d connections, want 2: the retry dials again", n)
	}
}
