package connector_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/tunnel"
)

func TestSnapshotPushed(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	rollover := newIdentity(t).ca
	core := startCore(t)
	logger, logs := observed()
	cfg := g.testConfig(id, logger,
		connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: core.Listener.Addr().String()},
		connector.ServiceConfig{Name: "web", Host: "web.example", HostRewrite: "web.lan", Address: "10.1.2.3:8443"},
	)
	cfg.TrustBundle = append(cfg.TrustBundle, rollover.Cert)
	c := startConnector(t, cfg)
	gs := g.next(t)

	h := gs.hello
	if h.Tenant != "acme" || h.ConnectorID != "conn-test" ||
		h.MinVersion != tunnel.MinProtocolVersion || h.MaxVersion != tunnel.MaxProtocolVersion {
		t.Errorf("hello = %+v", h)
	}
	if gs.pin != c.Pin() || gs.pin != id.pin {
		t.Errorf("connector presented key %s, want its pin %s", gs.pin, c.Pin())
	}
	s := gs.snap
	if s.Tenant != "acme" || s.Epoch == "" || s.Version == 0 {
		t.Errorf("snapshot names %q %q/%d", s.Tenant, s.Epoch, s.Version)
	}
	if len(s.TrustBundle) != 2 || !bytes.Equal(s.TrustBundle[0], id.ca.Cert.Raw) || !bytes.Equal(s.TrustBundle[1], rollover.Cert.Raw) {
		t.Errorf("trust bundle holds %d certificates, want the two configured CAs in order", len(s.TrustBundle))
	}
	want := []tunnel.Service{
		{Name: "core", PathPrefix: "/"},
		{Name: "web", Host: "web.example", HostRewrite: "web.lan"},
	}
	if len(s.Services) != len(want) {
		t.Fatalf("services = %+v, want %+v", s.Services, want)
	}
	for i := range want {
		if s.Services[i] != want[i] {
			t.Errorf("service %d = %+v, want %+v", i, s.Services[i], want[i])
		}
	}
	for _, addr := range []string{core.Listener.Addr().String(), "10.1.2.3"} {
		if bytes.Contains(gs.rawSnap, []byte(addr)) {
			t.Errorf("snapshot carries the LAN address %s to the DMZ", addr)
		}
	}
	waitFor(t, "session counted", func() bool { return c.Sessions() == 1 })
	waitFor(t, "ack logged", func() bool { return logs.FilterMessage("snapshot accepted").Len() == 1 })
	mustRelayHTTP(t, gs.sess, "core", "/hello")
}

// streamCase is one stream a gateway opens and the connector's answer.
type streamCase struct {
	name string
	// send is written on the new stream (nil: nothing, the header never
	// comes); closeWrite half-closes the stream after it.
	send       []byte
	closeWrite bool
	want       tunnel.Status
	wantMsg    string // in the reply's message
	minWait    time.Duration
}

func header(t *testing.T, kind tunnel.Kind, service string) []byte {
	t.Helper()
	b, err := (&tunnel.Header{Kind: kind, Service: service}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStreams(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	core := startCore(t)
	cfg := g.testConfig(id, nil,
		connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: core.Listener.Addr().String()},
		connector.ServiceConfig{Name: "gone", PathPrefix: "/gone", Address: closedAddr(t)},
	)
	c := startConnector(t, cfg)
	gs := g.next(t)
	mustRelayHTTP(t, gs.sess, "core", "/first")

	v2 := header(t, tunnel.KindHTTP, "core")
	v2[0] = 2
	tests := []streamCase{
		{name: "valid", send: header(t, tunnel.KindHTTP, "core"), want: tunnel.StatusOK},
		{name: "unknown service", send: header(t, tunnel.KindHTTP, "nope"), want: tunnel.StatusUnknownService},
		{name: "header version 2", send: v2, want: tunnel.StatusBadHeader, wantMsg: "version"},
		{name: "header version 0", send: []byte{0, 0, 0}, want: tunnel.StatusBadHeader, wantMsg: "version"},
		{name: "oversize length", send: []byte{tunnel.HeaderVersion, 0x10, 0x01}, want: tunnel.StatusBadHeader, wantMsg: "too large"},
		{name: "largest length", send: []byte{tunnel.HeaderVersion, 0xff, 0xff}, want: tunnel.StatusBadHeader, wantMsg: "too large"},
		{name: "field overruns", send: []byte{tunnel.HeaderVersion, 0, 3, 1, 1, 200}, want: tunnel.StatusBadHeader, wantMsg: "malformed"},
		{name: "truncated field", send: []byte{tunnel.HeaderVersion, 0, 2, 1, 1}, want: tunnel.StatusBadHeader, wantMsg: "malformed"},
		{name: "no kind", send: []byte{tunnel.HeaderVersion, 0, 0}, want: tunnel.StatusBadHeader, wantMsg: "malformed"},
		{name: "no service", send: []byte{tunnel.HeaderVersion, 0, 1, 1}, want: tunnel.StatusBadHeader, wantMsg: "service"},
		{name: "service not UTF-8", send: []byte{tunnel.HeaderVersion, 0, 5, 1, 1, 2, 0xff, 0xfe}, want: tunnel.StatusBadHeader, wantMsg: "UTF-8"},
		{name: "service repeated", send: []byte{tunnel.HeaderVersion, 0, 7, 1, 1, 1, 'a', 1, 1, 'b'}, want: tunnel.StatusBadHeader, wantMsg: "repeated"},
		{name: "truncated body", send: []byte{tunnel.HeaderVersion, 0, 20, 1, 1, 4}, closeWrite: true, want: tunnel.StatusBadHeader},
		{name: "header never sent", send: nil, want: tunnel.StatusBadHeader, minWait: cfg.Timeouts.StreamHeader},
		{name: "half a prefix then silence", send: []byte{tunnel.HeaderVersion}, want: tunnel.StatusBadHeader, minWait: cfg.Timeouts.StreamHeader},
		{name: "connect to an HTTP service", send: header(t, tunnel.KindConnect, "core"), want: tunnel.StatusUnknownService, wantMsg: "connect"},
		{name: "enroll not supported", send: header(t, tunnel.KindEnroll, "core"), want: tunnel.StatusBadHeader, wantMsg: "enroll"},
		{name: "unknown kind", send: header(t, tunnel.Kind(99), "core"), want: tunnel.StatusBadHeader},
		{name: "service refuses connections", send: header(t, tunnel.KindHTTP, "gone"), want: tunnel.StatusUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStream(t, gs.sess, tt)
			// The session survives whatever one stream did.
			mustRelayHTTP(t, gs.sess, "core", "/after")
		})
	}
	if n := c.Sessions(); n != 1 {
		t.Errorf("Sessions() = %d after the bad streams, want 1", n)
	}
	select {
	case gs := <-g.sessions:
		t.Errorf("connector dialed a new session (%+v): a bad stream broke the old one", gs.hello)
	default:
	}
}

// checkStream opens a stream on s, sends tt.send and checks the reply.
func checkStream(t *testing.T, s tunnel.Session, tt streamCase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	start := time.Now()
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(hang))
	if tt.send != nil {
		if _, err := st.Write(tt.send); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if tt.closeWrite {
		st.CloseWrite()
	}
	rep, err := tunnel.ReadReply(st)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if rep.Status != tt.want {
		t.Fatalf("status = %v (%q), want %v", rep.Status, rep.Message, tt.want)
	}
	if !strings.Contains(rep.Message, tt.wantMsg) {
		t.Errorf("message %q does not mention %q", rep.Message, tt.wantMsg)
	}
	if elapsed := time.Since(start); elapsed < tt.minWait {
		t.Errorf("answered after %v, before the header timeout of %v", elapsed, tt.minWait)
	}
	if tt.want == tunnel.StatusOK {
		status, body, err := exchange(st, "/x")
		if err != nil || status != 200 || body != "core: GET /x" {
			t.Errorf("exchange: %d %q %v", status, body, err)
		}
		return
	}
	// Any status but OK ends the stream: nothing follows the reply.
	n, err := st.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("stream left open after a %v reply", rep.Status)
		}
		t.Errorf("after a %v reply, read = %d, %v; want EOF", rep.Status, n, err)
	}
}

func TestStreamRelayedRaw(t *testing.T) {
	// The connector splices bytes: it does not parse HTTP, so a keep-alive
	// stream carries many requests, and a large body goes through whole.
	g := startFakeGateway(t)
	id := newIdentity(t)
	core := startCore(t)
	startConnector(t, g.testConfig(id, nil,
		connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: core.Listener.Addr().String()}))
	gs := g.next(t)
	st, err := relay(gs.sess, tunnel.KindHTTP, "core")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, p := range []string{"/a", "/b", "/" + strings.Repeat("c", 4000)} {
		if status, body, err := exchange(st, p); err != nil || status != 200 || body != "core: GET "+p {
			t.Fatalf("request %.20s on a kept-alive stream: %d %.40q %v", p, status, body, err)
		}
	}
}

func TestStreamIdleClosed(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	core := startCore(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: core.Listener.Addr().String()})
	cfg.Timeouts.StreamIdle = 300 * time.Millisecond
	startConnector(t, cfg)
	gs := g.next(t)
	st, err := relay(gs.sess, tunnel.KindHTTP, "core")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if status, _, err := exchange(st, "/busy"); err != nil || status != 200 {
		t.Fatalf("exchange: %d %v", status, err)
	}
	start := time.Now()
	st.SetReadDeadline(time.Now().Add(hang))
	n, err := st.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("idle stream: read = %d, %v; want EOF from the connector", n, err)
	}
	if elapsed := time.Since(start); elapsed < cfg.Timeouts.StreamIdle/2 {
		t.Errorf("idle stream closed after %v, stream_idle is %v", elapsed, cfg.Timeouts.StreamIdle)
	}
	mustRelayHTTP(t, gs.sess, "core", "/after-idle")
}
