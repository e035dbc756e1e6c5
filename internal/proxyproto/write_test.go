package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestAppendBinary(t *testing.T) {
	mapped := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	tests := []struct {
		name string
		h    Header
		want []byte
	}{
		{"proxy tcp4", Header{Command: Proxy, Source: src4, Destination: dst4}, hdr(0x21, 0x11, addrs4)},
		{"proxy tcp6", Header{Command: Proxy, Source: src6, Destination: dst6}, hdr(0x21, 0x21, addrs6)},
		{"IPv4-mapped sent as tcp4", Header{Command: Proxy, Source: mapped(src4), Destination: dst4}, hdr(0x21, 0x11, addrs4)},
		{"zones dropped", Header{Command: Proxy, Source: netip.MustParseAddrPort("[2001:db8::1%eth0]:56324"), Destination: dst6}, hdr(0x21, 0x21, addrs6)},
		{"proxy unknown", Header{Command: Proxy}, hdr(0x21, 0x00)},
		{"local", Header{Command: Local}, hdr(0x20, 0x00)},
		{"local drops addresses", Header{Command: Local, Source: src4, Destination: dst4}, hdr(0x20, 0x00)},
		{"TLVs", Header{Command: Proxy, Source: src4, Destination: dst4, TLVs: []TLV{
			{0x01, []byte("h2")}, {0x02, []byte("example.com")}, {0x04, nil}, {0xE0, []byte{1, 2, 3}},
		}}, hdr(0x21, 0x11, addrs4, tlvALPN, tlvAuth, tlvNoop, tlvCustom)},
		{"CRC32C filled in", Header{Command: Proxy, Source: src4, Destination: dst4, TLVs: []TLV{{0x03, nil}}}, hdr(0x21, 0x11, addrs4, tlvCRC)},
		{"CRC32C value replaced", Header{Command: Proxy, Source: src4, Destination: dst4, TLVs: []TLV{{0x03, []byte{9, 9, 9, 9}}}}, hdr(0x21, 0x11, addrs4, tlvCRC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			got, err := tt.h.AppendBinary(bytes.Clone(prefix))
			if err != nil {
				t.Fatalf("AppendBinary: %v", err)
			}
			if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], tt.want) {
				t.Errorf("AppendBinary =\n% x\nwant\n% x", got, cat(prefix, tt.want))
			}
		})
	}
}

func TestAppendBinaryInvalid(t *testing.T) {
	big := make([]byte, 1<<16)
	tests := []struct {
		name string
		h    Header
	}{
		{"command 2", Header{Command: 2}},
		{"mixed families", Header{Command: Proxy, Source: src4, Destination: dst6}},
		{"only a source", Header{Command: Proxy, Source: src4}},
		{"only a destination", Header{Command: Proxy, Destination: dst6}},
		{"TLV too long", Header{Command: Local, TLVs: []TLV{{0xE0, big}}}},
		{"header too long", Header{Command: Proxy, Source: src6, Destination: dst6, TLVs: []TLV{{0xE0, big[:65535-36-3]}, {0x04, nil}}}},
		{"CRC32C of 3 bytes", Header{Command: Local, TLVs: []TLV{{0x03, []byte{1, 2, 3}}}}},
		{"CRC32C twice", Header{Command: Local, TLVs: []TLV{{0x03, nil}, {0x03, nil}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte("keep")
			got, err := tt.h.AppendBinary(in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("AppendBinary = %v, want ErrInvalid", err)
			}
			if string(got) != "keep" {
				t.Errorf("AppendBinary changed b to %q", got)
			}
		})
	}
	// The largest header the format allows is still written.
	h := Header{Command: Proxy, Source: src6, Destination: dst6, TLVs: []TLV{{0xE0, big[:65535-36-3]}}}
	if b, err := h.AppendBinary(nil); err != nil || len(b) != 65535+16 {
		t.Errorf("AppendBinary of the largest header = %d bytes, %v; want %d", len(b), err, 65535+16)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []Header{
		{Command: Proxy, Source: src4, Destination: dst4},
		{Command: Proxy, Source: src6, Destination: dst6},
		{Command: Proxy, Source: netip.MustParseAddrPort("0.0.0.0:0"), Destination: netip.MustParseAddrPort("255.255.255.255:65535")},
		{Command: Proxy, Source: netip.MustParseAddrPort("[::]:0"), Destination: netip.MustParseAddrPort("[ffff::ffff]:65535")},
		{Command: Proxy},
		{Command: Local},
		{Command: Local, TLVs: []TLV{{0x04, []byte("padding")}}},
		{Command: Proxy, Source: src6, Destination: dst6, TLVs: []TLV{
			{0x01, []byte("http/1.1")}, {0x05, []byte("device-42")}, {0x03, []byte{0, 0, 0, 0}}, {0x20, []byte{1, 0, 0, 0, 0}},
		}},
	}
	for _, want := range tests {
		b, err := want.AppendBinary(nil)
		if err != nil {
			t.Fatalf("AppendBinary(%+v): %v", want, err)
		}
		got, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("ReadHeader(AppendBinary(%+v)): %v", want, err)
		}
		if !equivalent(got, &want) {
			t.Errorf("round trip of %+v = %+v", want, *got)
		}
	}
}

// equivalent reports whether a and b describe the same header: equal
// commands, addresses and TLVs, except that CRC32C values are not compared
// (AppendBinary computes them) and nil and empty values are equal.
func equivalent(a, b *Header) bool {
	if a.Command != b.Command || a.Source != b.Source || a.Destination != b.Destination || len(a.TLVs) != len(b.TLVs) {
		return false
	}
	for i, ta := range a.TLVs {
		tb := b.TLVs[i]
		if ta.Type != tb.Type || ta.Type != typeCRC32C && !bytes.Equal(ta.Value, tb.Value) {
			return false
		}
	}
	return true
}

// The encoding of what AppendBinary wrote is what it writes again.
func TestAppendBinaryFixedPoint(t *testing.T) {
	h := Header{Command: Proxy, Source: src4, Destination: dst4, TLVs: []TLV{{0x03, nil}, {0x01, []byte("h2")}}}
	b1, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := ReadHeader(bytes.NewReader(b1))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := h2.AppendBinary(nil)
	if err != nil || !bytes.Equal(b1, b2) {
		t.Errorf("re-encoding = % x, %v; want % x", b2, err, b1)
	}
	if !reflect.DeepEqual(h2.TLVs[1], TLV{0x01, []byte("h2")}) {
		t.Errorf("TLVs = %+v", h2.TLVs)
	}
}
