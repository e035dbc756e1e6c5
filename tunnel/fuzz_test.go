package tunnel_test

import (
	"bytes"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sekisho/sekisho/tunnel"
)

func FuzzReadHeader(f *testing.F) {
	for _, h := range []tunnel.Header{
		{Kind: tunnel.KindHTTP, Service: "core"},
		{Kind: tunnel.KindConnect, Service: "rdp", DeviceID: "d1", CertSHA256: digest(), ClientAddr: "192.0.2.7:50000"},
		{Kind: tunnel.KindEnroll, Service: "enroll", ClientAddr: "[2001:db8::1]:443"},
	} {
		b, err := h.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff})
	f.Add([]byte{2, 0, 1, 1})
	f.Add(headerBytes(1, 1, 1, 'a', 1, 1, 'b'))
	f.Add(headerBytes(2, 9, 0, 9, 0, 1, 1, 's', 3, 1, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := tunnel.ReadHeader(r)
		if err != nil {
			if h != nil {
				t.Fatalf("header %+v with error %v", h, err)
			}
			return
		}
		if used := len(data) - r.Len(); used > 3+tunnel.MaxHeaderLen || used != 3+int(data[1])<<8+int(data[2]) {
			t.Fatalf("read %d bytes of a frame of %d", used, 3+int(data[1])<<8+int(data[2]))
		}
		// Whatever is accepted re-encodes to the same header.
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("accepted %+v but cannot encode it: %v", h, err)
		}
		h2, err := tunnel.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-encoded %+v as %x, which does not decode: %v", h, b, err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip changed %+v to %+v", h, h2)
		}
	})
}

// FuzzHeaderEncode checks the other direction: any header the encoder
// accepts is read back equal.
func FuzzHeaderEncode(f *testing.F) {
	f.Add(uint8(1), "core", "", "", false)
	f.Add(uint8(2), "rdp", "d1", "192.0.2.7:1", true)
	f.Add(uint8(3), "\xff", "\xc3", "é", false)
	f.Fuzz(func(t *testing.T, kind uint8, service, device, addr string, withDigest bool) {
		h := &tunnel.Header{Kind: tunnel.Kind(kind), Service: service, DeviceID: device, ClientAddr: addr}
		if withDigest {
			h.CertSHA256 = digest()
		}
		b, err := h.AppendBinary(nil)
		if err != nil {
			return
		}
		got, err := tunnel.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("encoded %+v as %x, which does not decode: %v", h, b, err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Fatalf("round trip changed %+v to %+v", h, got)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	for _, rep := range []tunnel.Reply{
		{},
		{Status: tunnel.StatusOverBudget, Message: "budget", RetryAfter: 30 * time.Second},
		{Status: tunnel.StatusBadHeader, Message: "unsupported stream header version: 2"},
	} {
		b := rep.AppendBinary(nil)
		f.Add(b, "")
		f.Add(b[:len(b)-1], "é")
	}
	f.Add([]byte{1, 0, 7, 5, 2, 4, 0xff, 0xff, 0xff, 0xff}, "\xff")
	f.Add([]byte{1, 2, 1}, string(make([]byte, 300)))
	f.Fuzz(func(t *testing.T, data []byte, msg string) {
		r := bytes.NewReader(data)
		rep, err := tunnel.ReadReply(r)
		if err == nil {
			if used := len(data) - r.Len(); used != 3+int(data[1])<<8+int(data[2]) {
				t.Fatalf("read %d bytes of a frame of %d", used, 3+int(data[1])<<8+int(data[2]))
			}
			rep2, err := tunnel.ReadReply(bytes.NewReader(rep.AppendBinary(nil)))
			if err != nil {
				t.Fatalf("accepted %+v but its encoding does not decode: %v", rep, err)
			}
			// The writer caps the hint at 2^31 s, the reader takes 2^32-1.
			want := *rep
			want.RetryAfter = min(want.RetryAfter, (1<<31)*time.Second)
			if *rep2 != want {
				t.Fatalf("round trip changed %+v to %+v", want, *rep2)
			}
		}
		// Any message can be sent: it arrives as valid UTF-8 of at most
		// 255 bytes, unchanged when it was valid and short.
		in := &tunnel.Reply{Status: tunnel.StatusInternal, Message: msg}
		got, err := tunnel.ReadReply(bytes.NewReader(in.AppendBinary(nil)))
		if err != nil {
			t.Fatalf("message %q: reply does not decode: %v", msg, err)
		}
		if len(got.Message) > 255 || !utf8.ValidString(got.Message) {
			t.Fatalf("message %q arrived as %q", msg, got.Message)
		}
		if utf8.ValidString(msg) && len(msg) <= 255 && got.Message != msg {
			t.Fatalf("message %q arrived as %q", msg, got.Message)
		}
	})
}

func FuzzReadMessage(f *testing.F) {
	seed := func(t tunnel.MsgType, v any) {
		var buf bytes.Buffer
		if err := tunnel.WriteMessage(&buf, t, v); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	seed(tunnel.MsgHello, &tunnel.Hello{MinVersion: 1, MaxVersion: 1, Tenant: "acme", ConnectorID: "c1"})
	seed(tunnel.MsgSnapshot, &tunnel.Snapshot{
		Tenant: "acme", Epoch: "e1", Version: 3, TrustBundle: [][]byte{{1, 2, 3}},
		Services: []tunnel.Service{{Name: "core", PathPrefix: "/core/", HostRewrite: "core.lan"}},
	})
	seed(tunnel.MsgSnapshotAck, &tunnel.SnapshotAck{Epoch: "e1", Version: 3, Accepted: true})
	f.Add([]byte{1, 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{4, 0, 0, 0, 4, 'n', 'u', 'l', 'l'})
	f.Add([]byte{4, 0, 0, 0, 1, '['})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		typ, body, err := tunnel.ReadMessage(r, tunnel.MaxHelloLen)
		if err != nil {
			return
		}
		if len(body) > tunnel.MaxHelloLen || len(data)-r.Len() != 5+len(body) {
			t.Fatalf("body of %d bytes, %d bytes read", len(body), len(data)-r.Len())
		}
		var h tunnel.Hello
		if tunnel.Decode(typ, body, &h) == nil {
			tunnel.NegotiateVersion(&h)
			// A decoded hello survives a round trip.
			var buf bytes.Buffer
			if err := tunnel.WriteMessage(&buf, typ, &h); err != nil {
				t.Fatalf("re-encode %+v: %v", h, err)
			}
			typ2, body2, err := tunnel.ReadMessage(&buf, tunnel.MaxSnapshotLen)
			var h2 tunnel.Hello
			if err != nil || typ2 != typ || tunnel.Decode(typ2, body2, &h2) != nil || h2 != h {
				t.Fatalf("hello %+v came back as %+v (%v)", h, h2, err)
			}
		}
		var s tunnel.Snapshot
		tunnel.Decode(typ, body, &s)
		var a tunnel.SnapshotAck
		tunnel.Decode(typ, body, &a)
	})
}
