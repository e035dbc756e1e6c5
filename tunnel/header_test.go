package tunnel_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sekisho/sekisho/tunnel"
)

// digest is a certificate fingerprint with recognisable bytes 0x00..0x1f.
func digest() []byte {
	d := make([]byte, 32)
	for i := range d {
		d[i] = byte(i)
	}
	return d
}

// unhex decodes hex with spaces and newlines for readability.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeHeader(t testing.TB, h *tunnel.Header) []byte {
	t.Helper()
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encode %+v: %v", h, err)
	}
	return b
}

func TestHeaderRoundTrip(t *testing.T) {
	kinds := []tunnel.Kind{tunnel.KindHTTP, tunnel.KindConnect, tunnel.KindEnroll, 0, 200}
	long := strings.Repeat("x", 255)
	for _, kind := range kinds {
		// Every combination of the optional fields, with short and
		// longest values.
		for mask := range 8 {
			for _, v := range []struct{ name, service, device, addr string }{
				{"short", "core", "dev-1", "192.0.2.7:50000"},
				{"longest", long, long, long},
				{"unicode", "関所", "端末-7", "[2001:db8::1]:443"},
			} {
				h := &tunnel.Header{Kind: kind, Service: v.service}
				if mask&1 != 0 {
					h.DeviceID = v.device
				}
				if mask&2 != 0 {
					h.CertSHA256 = digest()
				}
				if mask&4 != 0 {
					h.ClientAddr = v.addr
				}
				t.Run(fmt.Sprintf("%v/fields=%03b/%s", kind, mask, v.name), func(t *testing.T) {
					b := encodeHeader(t, h)
					got, err := tunnel.ReadHeader(bytes.NewReader(b))
					if err != nil {
						t.Fatalf("decode: %v", err)
					}
					if !reflect.DeepEqual(got, h) {
						t.Errorf("round trip: got %+v, want %+v", got, h)
					}
					// Short reads change nothing.
					got, err = tunnel.ReadHeader(iotest.OneByteReader(bytes.NewReader(b)))
					if err != nil || !reflect.DeepEqual(got, h) {
						t.Errorf("one byte at a time: got %+v, %v", got, err)
					}
				})
			}
		}
	}
}

func TestHeaderLayout(t *testing.T) {
	tests := []struct {
		name string
		h    tunnel.Header
		want string
	}{{
		name: "http",
		h:    tunnel.Header{Kind: tunnel.KindHTTP, Service: "core"},
		// version 1, length 7, kind http, service "core"
		want: `01 0007 01  01 04 636f7265`,
	}, {
		name: "connect",
		h: tunnel.Header{
			Kind: tunnel.KindConnect, Service: "rdp", DeviceID: "d1",
			CertSHA256: digest(), ClientAddr: "192.0.2.7:50000",
		},
		want: `01 003d 02
			01 03 726470
			02 02 6431
			03 20 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
			04 0f 3139322e302e322e373a3530303030`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.want)
			if got := encodeHeader(t, &tt.h); !bytes.Equal(got, want) {
				t.Errorf("encoded\n got %x\nwant %x", got, want)
			}
			got, err := tunnel.ReadHeader(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.h) {
				t.Errorf("decoded %+v, want %+v", *got, tt.h)
			}
		})
	}
}

func TestHeaderAppendKeepsPrefix(t *testing.T) {
	prefix := []byte("prefix")
	h := &tunnel.Header{Kind: tunnel.KindHTTP, Service: "core"}
	b, err := h.AppendBinary(append([]byte(nil), prefix...))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("prefix lost: %q", b)
	}
	got, err := tunnel.ReadHeader(bytes.NewReader(b[len(prefix):]))
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Errorf("decode after prefix: %+v, %v", got, err)
	}
}

func TestHeaderEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		h    tunnel.Header
	}{
		{"no service", tunnel.Header{Kind: tunnel.KindHTTP}},
		{"short digest", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", CertSHA256: make([]byte, 31)}},
		{"empty non-nil digest", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", CertSHA256: []byte{}}},
		{"long digest", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", CertSHA256: make([]byte, 33)}},
		{"service over 255", tunnel.Header{Kind: tunnel.KindHTTP, Service: strings.Repeat("s", 256)}},
		{"device over 255", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", DeviceID: strings.Repeat("d", 256)}},
		{"address over 255", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", ClientAddr: strings.Repeat("a", 256)}},
		// What the reader refuses must not be written.
		{"service not UTF-8", tunnel.Header{Kind: tunnel.KindHTTP, Service: "\xff"}},
		{"device not UTF-8", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", DeviceID: "d\xc3"}},
		{"address not UTF-8", tunnel.Header{Kind: tunnel.KindConnect, Service: "s", ClientAddr: "\x80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.h.AppendBinary(nil)
			if !errors.Is(err, tunnel.ErrHeaderInvalid) {
				t.Errorf("got %x, %v; want ErrHeaderInvalid", b, err)
			}
		})
	}
}

// headerBytes builds a header frame around body (kind and fields).
func headerBytes(body ...byte) []byte {
	return append([]byte{tunnel.HeaderVersion, byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestReadHeaderErrors(t *testing.T) {
	const http = byte(tunnel.KindHTTP)
	oversize := append([]byte{1, 0x10, 0x01}, make([]byte, tunnel.MaxHeaderLen+1)...)
	tests := []struct {
		name string
		in   []byte
		want error
		left int // bytes that must still be unread
	}{
		{"empty input", nil, io.EOF, 0},
		{"version only", []byte{1}, io.ErrUnexpectedEOF, 0},
		{"truncated length", []byte{1, 0}, io.ErrUnexpectedEOF, 0},
		{"version 0", []byte{0, 0, 7, http, 1, 4, 'c', 'o', 'r', 'e'}, tunnel.ErrHeaderVersion, 7},
		{"version 2", []byte{2, 0, 7, http, 1, 4, 'c', 'o', 'r', 'e'}, tunnel.ErrHeaderVersion, 7},
		{"over MaxHeaderLen", oversize, tunnel.ErrHeaderTooLarge, tunnel.MaxHeaderLen + 1},
		{"length 0xffff", []byte{1, 0xff, 0xff, http}, tunnel.ErrHeaderTooLarge, 1},
		{"truncated body", []byte{1, 0, 7, http, 1, 4, 'c'}, io.ErrUnexpectedEOF, 0},
		{"empty body", headerBytes(), tunnel.ErrHeaderInvalid, 0},
		{"kind only", headerBytes(http), tunnel.ErrHeaderInvalid, 0},
		{"truncated field", headerBytes(http, 1, 4, 'c', 'o', 'r', 'e', 2), tunnel.ErrHeaderInvalid, 0},
		{"field overrun", headerBytes(http, 1, 5, 'c', 'o', 'r', 'e'), tunnel.ErrHeaderInvalid, 0},
		{"repeated service", headerBytes(http, 1, 1, 'a', 1, 1, 'b'), tunnel.ErrHeaderInvalid, 0},
		{"repeated device", headerBytes(http, 1, 1, 'a', 2, 1, 'd', 2, 1, 'd'), tunnel.ErrHeaderInvalid, 0},
		{"missing service", headerBytes(http, 2, 1, 'd'), tunnel.ErrHeaderInvalid, 0},
		{"empty service", headerBytes(http, 1, 0), tunnel.ErrHeaderInvalid, 0},
		{"empty digest", headerBytes(http, 1, 1, 's', 3, 0), tunnel.ErrHeaderInvalid, 0},
		{"short digest", headerBytes(append([]byte{http, 1, 1, 's', 3, 31}, make([]byte, 31)...)...), tunnel.ErrHeaderInvalid, 0},
		{"long digest", headerBytes(append([]byte{http, 1, 1, 's', 3, 33}, make([]byte, 33)...)...), tunnel.ErrHeaderInvalid, 0},
		{"service not UTF-8", headerBytes(http, 1, 1, 0xff), tunnel.ErrHeaderInvalid, 0},
		{"device not UTF-8", headerBytes(http, 1, 1, 's', 2, 2, 0xc3, 0x28), tunnel.ErrHeaderInvalid, 0},
		{"address not UTF-8", headerBytes(http, 1, 1, 's', 4, 1, 0x80), tunnel.ErrHeaderInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			h, err := tunnel.ReadHeader(r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %+v, %v; want %v", h, err, tt.want)
			}
			if h != nil {
				t.Errorf("header %+v returned with error", h)
			}
			if r.Len() != tt.left {
				t.Errorf("%d bytes left unread, want %d", r.Len(), tt.left)
			}
		})
	}
}

func TestReadHeaderLimits(t *testing.T) {
	// A body of exactly MaxHeaderLen bytes, padded with unknown fields.
	body := []byte{byte(tunnel.KindHTTP), 1, 4, 'c', 'o', 'r', 'e'}
	for len(body) < tunnel.MaxHeaderLen {
		n := min(255, tunnel.MaxHeaderLen-len(body)-2)
		body = append(body, 200, byte(n))
		body = append(body, make([]byte, n)...)
	}
	if len(body) != tunnel.MaxHeaderLen {
		t.Fatalf("built %d bytes", len(body))
	}
	h, err := tunnel.ReadHeader(bytes.NewReader(headerBytes(body...)))
	if err != nil {
		t.Fatalf("header of MaxHeaderLen bytes: %v", err)
	}
	if h.Service != "core" {
		t.Errorf("service %q", h.Service)
	}
}

func TestReadHeaderSkipsUnknownTags(t *testing.T) {
	in := headerBytes(byte(tunnel.KindConnect),
		9, 3, 'x', 'y', 'z', // unknown, before the service
		1, 4, 'c', 'o', 'r', 'e',
		0, 0, // tag 0, empty
		2, 2, 'd', '1',
		255, 1, 0xff, // unknown, not UTF-8: not looked at
		9, 1, 'w', // unknown tags may repeat
	)
	h, err := tunnel.ReadHeader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &tunnel.Header{Kind: tunnel.KindConnect, Service: "core", DeviceID: "d1"}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %+v, want %+v", h, want)
	}
}

func TestReadHeaderReadsNothingPastIt(t *testing.T) {
	h := &tunnel.Header{Kind: tunnel.KindEnroll, Service: "enroll", ClientAddr: "198.51.100.1:1234"}
	payload := []byte("GET / HTTP/1.1\r\n\r\n")
	r := bytes.NewReader(append(encodeHeader(t, h), payload...))
	if _, err := tunnel.ReadHeader(r); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if !bytes.Equal(rest, payload) {
		t.Errorf("left %q, want %q", rest, payload)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[tunnel.Kind]string{
		tunnel.KindHTTP: "http", tunnel.KindConnect: "connect", tunnel.KindEnroll: "enroll",
		0: "kind(0)", 9: "kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d) = %q, want %q", uint8(k), got, want)
		}
	}
}
