package tunnel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		typ      tunnel.MsgType
		in, into any
	}{
		{tunnel.MsgHello, &tunnel.Hello{MinVersion: 1, MaxVersion: 3, Tenant: "acme", ConnectorID: "c1", Software: "sekisho/1.0"}, new(tunnel.Hello)},
		{tunnel.MsgWelcome, &tunnel.Welcome{Version: 1, GatewayID: "gw-a"}, new(tunnel.Welcome)},
		{tunnel.MsgRefuse, &tunnel.Refuse{Reason: "unknown_tenant", Message: "no such tenant"}, new(tunnel.Refuse)},
		{tunnel.MsgSnapshot, &tunnel.Snapshot{
			Tenant: "acme", Epoch: "2f1c", Version: 42,
			TrustBundle: [][]byte{{0x30, 0x82, 0x01}, {0x30, 0x82, 0x02}},
			Services: []tunnel.Service{
				{Name: "core", PathPrefix: "/core/", HostRewrite: "core.lan"},
				{Name: "patch", Host: "patch.example.com"},
			},
		}, new(tunnel.Snapshot)},
		{tunnel.MsgSnapshotAck, &tunnel.SnapshotAck{Epoch: "2f1c", Version: 42, Error: "bad bundle"}, new(tunnel.SnapshotAck)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("type %d", tt.typ), func(t *testing.T) {
			var buf bytes.Buffer
			if err := tunnel.WriteMessage(&buf, tt.typ, tt.in); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			if raw[0] != byte(tt.typ) || int(binary.BigEndian.Uint32(raw[1:5])) != len(raw)-5 {
				t.Fatalf("frame %x: want type %d and length %d", raw[:5], tt.typ, len(raw)-5)
			}
			typ, body, err := tunnel.ReadMessage(&buf, tunnel.MaxSnapshotLen)
			if err != nil {
				t.Fatal(err)
			}
			if typ != tt.typ {
				t.Errorf("type %d, want %d", typ, tt.typ)
			}
			if err := tunnel.Decode(typ, body, tt.into); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tt.into, tt.in) {
				t.Errorf("got %+v, want %+v", tt.into, tt.in)
			}
		})
	}
}

func TestMessageLayout(t *testing.T) {
	var buf bytes.Buffer
	if err := tunnel.WriteMessage(&buf, tunnel.MsgWelcome, &tunnel.Welcome{Version: 1}); err != nil {
		t.Fatal(err)
	}
	want := append(unhex(t, `02 0000000d`), `{"version":1}`...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("got %x, want %x", buf.Bytes(), want)
	}
}

func TestReadMessageErrors(t *testing.T) {
	frame := func(typ byte, n uint32, body string) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{typ}, n), body...)
	}
	tests := []struct {
		name  string
		in    []byte
		limit int
		want  error
		left  int
	}{
		{"clean end", nil, 16, io.EOF, 0},
		{"truncated prefix", []byte{1, 0, 0}, 16, io.ErrUnexpectedEOF, 0},
		{"truncated body", frame(1, 10, "{}"), 16, io.ErrUnexpectedEOF, 0},
		{"over the limit", frame(1, 17, "{...}"), 16, tunnel.ErrMessageTooLarge, 5},
		{"length 2^32-1", frame(4, 1<<32-1, "{}"), tunnel.MaxSnapshotLen, tunnel.ErrMessageTooLarge, 2},
		{"hello over MaxHelloLen", frame(1, tunnel.MaxHelloLen+1, ""), tunnel.MaxHelloLen, tunnel.ErrMessageTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			_, _, err := tunnel.ReadMessage(r, tt.limit)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if r.Len() != tt.left {
				t.Errorf("%d bytes left unread, want %d (the body of a refused message is not read)", r.Len(), tt.left)
			}
		})
	}
}

func TestReadMessageAtLimit(t *testing.T) {
	body := bytes.Repeat([]byte{' '}, 100)
	in := append(binary.BigEndian.AppendUint32([]byte{9}, 100), body...)
	in = append(in, "next"...)
	r := bytes.NewReader(in)
	typ, got, err := tunnel.ReadMessage(r, 100)
	if err != nil || typ != 9 || !bytes.Equal(got, body) {
		t.Fatalf("got %d, %d bytes, %v", typ, len(got), err)
	}
	if r.Len() != 4 {
		t.Errorf("%d bytes left, want 4", r.Len())
	}
}

func TestWriteMessageTooLarge(t *testing.T) {
	// base64 makes 4 bytes of 3: this is just over the limit.
	snap := &tunnel.Snapshot{TrustBundle: [][]byte{make([]byte, tunnel.MaxSnapshotLen/4*3+3)}}
	var buf bytes.Buffer
	if err := tunnel.WriteMessage(&buf, tunnel.MsgSnapshot, snap); !errors.Is(err, tunnel.ErrMessageTooLarge) {
		t.Errorf("got %v, want ErrMessageTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Errorf("%d bytes written", buf.Len())
	}
	if err := tunnel.WriteMessage(&buf, tunnel.MsgHello, func() {}); err == nil {
		t.Error("a value JSON cannot encode was written")
	}
}

func TestDecode(t *testing.T) {
	var h tunnel.Hello
	body := `{"min_version":1,"max_version":2,"tenant":"acme","connector_id":"c1","future":{"x":[1,2]},"software":"s"}`
	if err := tunnel.Decode(tunnel.MsgHello, []byte(body), &h); err != nil {
		t.Fatalf("unknown fields must be ignored: %v", err)
	}
	want := tunnel.Hello{MinVersion: 1, MaxVersion: 2, Tenant: "acme", ConnectorID: "c1", Software: "s"}
	if h != want {
		t.Errorf("got %+v, want %+v", h, want)
	}
	for _, bad := range []string{``, `{`, `[]`, `{"min_version":"one"}`} {
		if err := tunnel.Decode(tunnel.MsgHello, []byte(bad), &h); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestNegotiateVersion(t *testing.T) {
	const lo, hi = tunnel.MinProtocolVersion, tunnel.MaxProtocolVersion
	tests := []struct {
		name     string
		min, max int
		want     int // 0: no common version
	}{
		{"same range", lo, hi, hi},
		{"peer newer", lo, hi + 5, hi},
		{"peer older", lo - 1, hi, hi},
		{"peer wider", lo - 1, hi + 1, hi},
		{"peer speaks only the oldest", lo, lo, lo},
		{"disjoint above", hi + 1, hi + 3, 0},
		{"disjoint below", lo - 2, lo - 1, 0},
		{"inverted", hi, lo - 1, 0},
		{"inverted overlapping", hi + 1, lo, 0},
		{"zero hello", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tunnel.NegotiateVersion(&tunnel.Hello{MinVersion: tt.min, MaxVersion: tt.max})
			switch {
			case tt.want == 0 && err == nil:
				t.Errorf("%d..%d: negotiated %d, want an error", tt.min, tt.max, got)
			case tt.want != 0 && (err != nil || got != tt.want):
				t.Errorf("%d..%d: got %d, %v; want %d", tt.min, tt.max, got, err, tt.want)
			}
		})
	}
}

func hello() tunnel.Hello {
	return tunnel.Hello{
		MinVersion: tunnel.MinProtocolVersion, MaxVersion: tunnel.MaxProtocolVersion,
		Tenant: "acme", ConnectorID: "c1", Software: "test",
	}
}

// gatewayAnswer accepts the control stream on s and answers the hello with
// one message, returning the control stream and the hello it read.
func gatewayAnswer(s tunnel.Session, typ tunnel.MsgType, v any) <-chan tunneltest.Result[*tunnel.Hello] {
	return tunneltest.Async(func() (*tunnel.Hello, error) {
		c, h, err := tunnel.AcceptControl(context.Background(), s, hang)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := c.Send(typ, v); err != nil {
			return nil, err
		}
		// Wait for the connector to close its end.
		c.Receive(tunnel.MaxHelloLen, time.Now().Add(hang))
		return h, nil
	})
}

func TestControlWelcome(t *testing.T) { forEachTransport(t, testControlWelcome) }

func testControlWelcome(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	ctx := context.Background()
	snap := &tunnel.Snapshot{Tenant: "acme", Epoch: "e1", Version: 7,
		TrustBundle: [][]byte{{1, 2, 3}}, Services: []tunnel.Service{{Name: "core", PathPrefix: "/"}}}

	gw := tunneltest.Async(func() (*tunnel.Snapshot, error) {
		c, h, err := tunnel.AcceptControl(ctx, server, hang)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if h != nil && *h != hello() {
			return nil, fmt.Errorf("gateway read hello %+v", *h)
		}
		v, err := tunnel.NegotiateVersion(h)
		if err != nil {
			return nil, err
		}
		if err := c.Send(tunnel.MsgWelcome, &tunnel.Welcome{Version: v, GatewayID: "gw-a"}); err != nil {
			return nil, err
		}
		typ, body, err := c.Receive(tunnel.MaxSnapshotLen, time.Time{})
		if err != nil || typ != tunnel.MsgSnapshot {
			return nil, fmt.Errorf("receive snapshot: type %d, %v", typ, err)
		}
		var got tunnel.Snapshot
		if err := tunnel.Decode(typ, body, &got); err != nil {
			return nil, err
		}
		return &got, c.Send(tunnel.MsgSnapshotAck, &tunnel.SnapshotAck{Epoch: got.Epoch, Version: got.Version, Accepted: true})
	})

	c, w, err := tunnel.OpenControl(ctx, client, hello(), hang)
	if err != nil {
		t.Fatalf("open control: %v", err)
	}
	defer c.Close()
	if *w != (tunnel.Welcome{Version: tunnel.MaxProtocolVersion, GatewayID: "gw-a"}) {
		t.Errorf("welcome %+v", *w)
	}
	if err := c.Send(tunnel.MsgSnapshot, snap); err != nil {
		t.Fatal(err)
	}
	typ, body, err := c.Receive(tunnel.MaxHelloLen, time.Now().Add(hang))
	if err != nil || typ != tunnel.MsgSnapshotAck {
		t.Fatalf("receive ack: type %d, %v", typ, err)
	}
	var ack tunnel.SnapshotAck
	if err := tunnel.Decode(typ, body, &ack); err != nil || ack != (tunnel.SnapshotAck{Epoch: "e1", Version: 7, Accepted: true}) {
		t.Errorf("ack %+v, %v", ack, err)
	}
	got, err := tunneltest.Await(t, gw, "gateway")
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	if !reflect.DeepEqual(got, snap) {
		t.Errorf("gateway got %+v, want %+v", got, snap)
	}
}

func TestOpenControlAnswers(t *testing.T) { forEachTransport(t, testOpenControlAnswers) }

func testOpenControlAnswers(t *testing.T, tr transport) {
	tests := []struct {
		name  string
		typ   tunnel.MsgType
		v     any
		check func(t *testing.T, err error)
	}{{
		name: "refused",
		typ:  tunnel.MsgRefuse,
		v:    &tunnel.Refuse{Reason: "unknown_tenant", Message: "who are you"},
		check: func(t *testing.T, err error) {
			var re *tunnel.RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RefusedError", err)
			}
			if re.Refuse != (tunnel.Refuse{Reason: "unknown_tenant", Message: "who are you"}) {
				t.Errorf("refusal %+v", re.Refuse)
			}
			if want := "gateway refused the session: unknown_tenant: who are you"; re.Error() != want {
				t.Errorf("message %q, want %q", re.Error(), want)
			}
		},
	}, {
		name: "version too new",
		typ:  tunnel.MsgWelcome,
		v:    &tunnel.Welcome{Version: tunnel.MaxProtocolVersion + 1},
	}, {
		name: "version too old",
		typ:  tunnel.MsgWelcome,
		v:    &tunnel.Welcome{Version: tunnel.MinProtocolVersion - 1},
	}, {
		name: "unexpected message",
		typ:  tunnel.MsgSnapshotAck,
		v:    &tunnel.SnapshotAck{Accepted: true},
	}, {
		name: "garbled welcome",
		typ:  tunnel.MsgWelcome,
		v:    []int{1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tr.pair(t, tunnel.Config{})
			gw := gatewayAnswer(server, tt.typ, tt.v)
			c, w, err := tunnel.OpenControl(context.Background(), client, hello(), hang)
			if err == nil {
				c.Close()
				t.Fatalf("accepted with welcome %+v", w)
			}
			if c != nil || w != nil {
				t.Errorf("control %v and welcome %v returned with an error", c, w)
			}
			var re *tunnel.RefusedError
			if tt.check != nil {
				tt.check(t, err)
			} else if errors.As(err, &re) {
				t.Errorf("%v is not a refusal", err)
			}
			if _, err := tunneltest.Await(t, gw, "gateway"); err != nil {
				t.Errorf("gateway: %v", err)
			}
		})
	}
}

func TestControlTimeouts(t *testing.T) { forEachTransport(t, testControlTimeouts) }

func testControlTimeouts(t *testing.T, tr transport) {
	const timeout = 200 * time.Millisecond
	t.Run("no welcome", func(t *testing.T) {
		client, server := tr.pair(t, tunnel.Config{})
		serve(t, server, func(st tunnel.Stream) { io.Copy(io.Discard, st) })
		start := time.Now()
		_, _, err := tunnel.OpenControl(context.Background(), client, hello(), timeout)
		if !isTimeout(err) {
			t.Fatalf("got %v, want a timeout", err)
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("gave up after %v, before the timeout of %v", d, timeout)
		}
	})
	t.Run("no hello", func(t *testing.T) {
		client, server := tr.pair(t, tunnel.Config{})
		st, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.Write([]byte{byte(tunnel.MsgHello), 0}) // a partial frame, then silence
		start := time.Now()
		_, _, err = tunnel.AcceptControl(context.Background(), server, timeout)
		if !isTimeout(err) {
			t.Fatalf("got %v, want a timeout", err)
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("gave up after %v, before the timeout of %v", d, timeout)
		}
	})
	t.Run("no control stream", func(t *testing.T) {
		_, server := tr.pair(t, tunnel.Config{})
		_, _, err := tunnel.AcceptControl(context.Background(), server, timeout)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestAcceptControlRefusesBadHello(t *testing.T) {
	forEachTransport(t, testAcceptControlRefusesBadHello)
}

func testAcceptControlRefusesBadHello(t *testing.T, tr transport) {
	tests := []struct {
		name  string
		frame func(w io.Writer) error
		want  error
	}{
		{"not a hello", func(w io.Writer) error {
			return tunnel.WriteMessage(w, tunnel.MsgSnapshot, &tunnel.Snapshot{Tenant: "acme"})
		}, nil},
		{"hello too large", func(w io.Writer) error {
			return tunnel.WriteMessage(w, tunnel.MsgHello, &tunnel.Hello{Tenant: string(bytes.Repeat([]byte{'a'}, tunnel.MaxHelloLen))})
		}, tunnel.ErrMessageTooLarge},
		{"garbled hello", func(w io.Writer) error {
			_, err := w.Write([]byte{byte(tunnel.MsgHello), 0, 0, 0, 1, '{'})
			return err
		}, nil},
		{"closed before hello", func(w io.Writer) error { return nil }, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tr.pair(t, tunnel.Config{})
			st, err := client.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := tt.frame(st); err != nil {
				t.Fatal(err)
			}
			st.CloseWrite()
			c, h, err := tunnel.AcceptControl(context.Background(), server, hang)
			if err == nil {
				c.Close()
				t.Fatalf("accepted hello %+v", h)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			// The gateway closed the stream: the connector reads EOF.
			st.SetReadDeadline(time.Now().Add(hang))
			if n, err := io.Copy(io.Discard, st); err != nil || n != 0 {
				t.Errorf("connector read %d bytes, %v; want a clean EOF", n, err)
			}
		})
	}
}

// TestControlSendIsSerialised sends from many goroutines at once: every
// message must arrive whole.
func TestControlSendIsSerialised(t *testing.T) { forEachTransport(t, testControlSendIsSerialised) }

func testControlSendIsSerialised(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{})
	cs, ss := streamPair(t, client, server)
	c := tunnel.NewControl(cs, hang)
	const senders, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		wg.Go(func() {
			snap := &tunnel.Snapshot{Tenant: fmt.Sprint(i), TrustBundle: [][]byte{make([]byte, 2000*(i+1))}}
			for range each {
				if err := c.Send(tunnel.MsgSnapshot, snap); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	r := tunnel.NewControl(ss, hang)
	counts := map[string]int{}
	for range senders * each {
		typ, body, err := r.Receive(tunnel.MaxSnapshotLen, time.Now().Add(hang))
		if err != nil {
			t.Fatalf("receive after %v: %v", counts, err)
		}
		var s tunnel.Snapshot
		if err := tunnel.Decode(typ, body, &s); err != nil {
			t.Fatalf("message %d garbled: %v", len(counts), err)
		}
		counts[s.Tenant]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range senders {
		if counts[fmt.Sprint(i)] != each {
			t.Errorf("sender %d: %d messages, want %d", i, counts[fmt.Sprint(i)], each)
		}
	}
}

// TestControlSendSlowLink pushes a snapshot that the link needs much
// longer than WriteTimeout to carry, over a slow but healthy link: it must
// arrive whole, and the session must stay up. (yamux sends one write as
// one frame, which must be on the wire within WriteTimeout.) It runs in
// real time: see synctest_test.go for why a bubble cannot pace a link.
func TestControlSendSlowLink(t *testing.T) {
	const rate = 4 << 20 // bytes per second: 64 KiB take 16ms
	cfg := tunnel.Config{WriteTimeout: 250 * time.Millisecond, KeepAliveInterval: 250 * time.Millisecond}
	_, client, server := memPair(t, rate, cfg)
	cs, ss := streamPair(t, client, server)
	snap := &tunnel.Snapshot{Tenant: "acme", Epoch: "e", Version: 1,
		TrustBundle: [][]byte{make([]byte, 2<<20)}} // 2.7 MiB of JSON: 0.7s on the link

	received := tunneltest.Async(func() (*tunnel.Snapshot, error) {
		typ, body, err := tunnel.NewControl(ss, hang).Receive(tunnel.MaxSnapshotLen, time.Now().Add(hang))
		if err != nil {
			return nil, err
		}
		var got tunnel.Snapshot
		return &got, tunnel.Decode(typ, body, &got)
	})
	start := time.Now()
	if err := tunnel.NewControl(cs, hang).Send(tunnel.MsgSnapshot, snap); err != nil {
		t.Fatalf("send after %v: %v", time.Since(start), err)
	}
	got, err := tunneltest.Await(t, received, "gateway")
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	if !reflect.DeepEqual(got, snap) {
		t.Errorf("gateway got a different snapshot")
	}
	for name, s := range map[string]tunnel.Session{"client": client, "server": server} {
		select {
		case <-s.Done():
			t.Errorf("%s: session ended on a slow link", name)
		default:
		}
	}
}

// TestControlSendFailureClosesStream: a send that times out part-way
// closes the stream, so the peer's read of the message fails instead of
// waiting for the rest of it.
func TestControlSendFailureClosesStream(t *testing.T) {
	forEachTransport(t, testControlSendFailureClosesStream)
}

func testControlSendFailureClosesStream(t *testing.T, tr transport) {
	client, server := tr.pair(t, tunnel.Config{StreamWindow: 256 << 10})
	cs, ss := streamPair(t, client, server)
	// The peer does not read yet: the window fills, the send times out.
	c := tunnel.NewControl(cs, 200*time.Millisecond)
	err := c.Send(tunnel.MsgSnapshot, &tunnel.Snapshot{TrustBundle: [][]byte{make([]byte, 1<<20)}})
	if !isTimeout(err) {
		t.Fatalf("send to a peer that does not read: %v, want a timeout", err)
	}
	ss.SetReadDeadline(time.Now().Add(hang))
	_, body, err := tunnel.ReadMessage(ss, tunnel.MaxSnapshotLen)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("peer read %d bytes, %v; want io.ErrUnexpectedEOF", len(body), err)
	}
	// Nothing was written: the stream stays open.
	cs2, ss2 := streamPair(t, client, server)
	c2 := tunnel.NewControl(cs2, hang)
	if err := c2.Send(tunnel.MsgHello, func() {}); err == nil {
		t.Fatal("sent a value JSON cannot encode")
	}
	if err := c2.Send(tunnel.MsgHello, &tunnel.Hello{Tenant: "acme"}); err != nil {
		t.Fatalf("send after an encoding error: %v", err)
	}
	if typ, _, err := tunnel.NewControl(ss2, hang).Receive(tunnel.MaxHelloLen, time.Now().Add(hang)); err != nil || typ != tunnel.MsgHello {
		t.Errorf("peer: type %d, %v", typ, err)
	}
}
