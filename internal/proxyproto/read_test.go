package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// Hand-built pieces of headers, from the specification.
var (
	sig = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}
	// 192.0.2.1:56324 -> 198.51.100.2:443
	addrs4 = []byte{192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x01, 0xBB}
	// [2001:db8::1]:56324 -> [2001:db8::2]:443
	addrs6 = cat(
		[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2},
		[]byte{0xDC, 0x04, 0x01, 0xBB},
	)
	// [::ffff:192.0.2.1]:56324 -> [::ffff:198.51.100.2]:443
	addrs4in6 = cat(
		[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1},
		[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2},
		[]byte{0xDC, 0x04, 0x01, 0xBB},
	)
	// The CRC32C of the v4 header with tlvCRC, computed independently of
	// this package (bitwise, polynomial 0x82F63B78).
	tlvCRC    = []byte{0x03, 0x00, 0x04, 0x20, 0xEC, 0x95, 0x49}
	tlvALPN   = []byte{0x01, 0x00, 0x02, 'h', '2'}
	tlvAuth   = []byte{0x02, 0x00, 0x0B, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm'}
	tlvNoop   = []byte{0x04, 0x00, 0x00}
	tlvCustom = []byte{0xE0, 0x00, 0x03, 1, 2, 3}

	src4 = netip.MustParseAddrPort("192.0.2.1:56324")
	dst4 = netip.MustParseAddrPort("198.51.100.2:443")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:56324")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:443")
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// hdr builds a header: signature, version and command, family, the length
// of body, body.
func hdr(verCmd, fam byte, body ...[]byte) []byte {
	b := cat(body...)
	return cat(sig, []byte{verCmd, fam, byte(len(b) >> 8), byte(len(b))}, b)
}

func TestReadHeaderValid(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Header
	}{
		{"proxy tcp4", hdr(0x21, 0x11, addrs4), Header{Command: Proxy, Source: src4, Destination: dst4}},
		{"proxy tcp6", hdr(0x21, 0x21, addrs6), Header{Command: Proxy, Source: src6, Destination: dst6}},
		{"proxy tcp6 with IPv4-mapped addresses", hdr(0x21, 0x21, addrs4in6), Header{Command: Proxy, Source: src4, Destination: dst4}},
		{"local unspec", hdr(0x20, 0x00), Header{Command: Local}},
		{"local tcp4 discards addresses", hdr(0x20, 0x11, addrs4), Header{Command: Local}},
		{"local tcp6 discards addresses", hdr(0x20, 0x21, addrs6, tlvNoop), Header{Command: Local, TLVs: []TLV{{0x04, []byte{}}}}},
		{"proxy unspec is unknown", hdr(0x21, 0x00), Header{Command: Proxy}},
		{"unspec skips nothing before TLVs", hdr(0x21, 0x00, tlvALPN), Header{Command: Proxy, TLVs: []TLV{{0x01, []byte("h2")}}}},
		{"tcp4 with TLVs", hdr(0x21, 0x11, addrs4, tlvALPN, tlvAuth, tlvNoop, tlvCustom), Header{
			Command: Proxy, Source: src4, Destination: dst4,
			TLVs: []TLV{{0x01, []byte("h2")}, {0x02, []byte("example.com")}, {0x04, []byte{}}, {0xE0, []byte{1, 2, 3}}},
		}},
		{"tcp4 with good CRC32C", hdr(0x21, 0x11, addrs4, tlvCRC), Header{
			Command: Proxy, Source: src4, Destination: dst4,
			TLVs: []TLV{{0x03, []byte{0x20, 0xEC, 0x95, 0x49}}},
		}},
		{"largest accepted", hdr(0x21, 0x21, addrs6, []byte{0x04, (MaxHeaderLen - 55) >> 8, (MaxHeaderLen - 55) & 0xFF}, make([]byte, MaxHeaderLen-55)), Header{
			Command: Proxy, Source: src6, Destination: dst6,
			TLVs: []TLV{{0x04, make([]byte, MaxHeaderLen-55)}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				wrap func(io.Reader) io.Reader
			}{
				{"whole", func(r io.Reader) io.Reader { return r }},
				{"byte by byte", iotest.OneByteReader},
				{"in halves", iotest.HalfReader},
			} {
				rest := []byte("\x16\x03\x01 and then the stream")
				br := bytes.NewReader(cat(tt.in, rest))
				h, err := ReadHeader(r.wrap(br))
				if err != nil {
					t.Fatalf("%s: ReadHeader: %v", r.name, err)
				}
				if !reflect.DeepEqual(*h, tt.want) {
					t.Errorf("%s: ReadHeader = %+v, want %+v", r.name, *h, tt.want)
				}
				if got, _ := io.ReadAll(br); !bytes.Equal(got, rest) {
					t.Errorf("%s: left %q in the reader, want %q", r.name, got, rest)
				}
			}
			// A reader may return the last bytes together with io.EOF.
			h, err := ReadHeader(iotest.DataErrReader(bytes.NewReader(tt.in)))
			if err != nil || !reflect.DeepEqual(*h, tt.want) {
				t.Errorf("ReadHeader(DataErrReader) = %+v, %v; want %+v", h, err, tt.want)
			}
		})
	}
}

func TestReadHeaderInvalid(t *testing.T) {
	v4 := hdr(0x21, 0x11, addrs4)
	withLen := func(b []byte, n int) []byte {
		b = bytes.Clone(b)
		b[14], b[15] = byte(n>>8), byte(n)
		return b
	}
	badCRC := hdr(0x21, 0x11, addrs4, tlvCRC)
	badCRC[len(badCRC)-1] ^= 1
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"TLS ClientHello", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 random bytes follow"), ErrNotProxy},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrNotProxy},
		{"PROXY v1", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"), ErrNotProxy},
		{"short non-PROXY", []byte("GET"), ErrNotProxy},
		{"signature off by one bit", cat(sig[:11], []byte{0x0B, 0x21, 0x11, 0x00, 0x0C}, addrs4), ErrNotProxy},
		{"truncated signature", sig[:8], io.ErrUnexpectedEOF},
		{"truncated preamble", v4[:15], io.ErrUnexpectedEOF},
		{"preamble only", v4[:16], io.ErrUnexpectedEOF},
		{"truncated addresses", v4[:len(v4)-1], io.ErrUnexpectedEOF},
		{"truncated TLV value", hdr(0x21, 0x11, addrs4, tlvALPN)[:16+12+4], io.ErrUnexpectedEOF},
		{"version 1", hdr(0x11, 0x11, addrs4), ErrInvalid},
		{"version 3", hdr(0x31, 0x11, addrs4), ErrInvalid},
		{"command 2", hdr(0x22, 0x11, addrs4), ErrInvalid},
		{"command 15", hdr(0x2F, 0x11, addrs4), ErrInvalid},
		{"udp4", hdr(0x21, 0x12, addrs4), ErrInvalid},
		{"udp6", hdr(0x21, 0x22, addrs6), ErrInvalid},
		{"unix stream", hdr(0x21, 0x31, make([]byte, 216)), ErrInvalid},
		{"unix dgram", hdr(0x21, 0x32, make([]byte, 216)), ErrInvalid},
		{"unspec over stream", hdr(0x21, 0x01), ErrInvalid},
		{"family 4", hdr(0x21, 0x41, addrs4), ErrInvalid},
		{"transport 3", hdr(0x21, 0x13, addrs4), ErrInvalid},
		{"local with unix", hdr(0x20, 0x31, make([]byte, 216)), ErrInvalid},
		{"length 65535", withLen(v4, 0xFFFF), ErrInvalid},
		{"length over the limit", withLen(v4, MaxHeaderLen-16+1), ErrInvalid},
		{"length short of tcp4 addresses", hdr(0x21, 0x11, addrs4[:11]), ErrInvalid},
		{"length short of tcp6 addresses", hdr(0x21, 0x21, addrs4), ErrInvalid},
		{"local length short of addresses", hdr(0x20, 0x11, addrs4[:8]), ErrInvalid},
		{"TLV overruns the header", hdr(0x21, 0x11, addrs4, []byte{0x01, 0x00, 0x03, 'h', '2'}), ErrInvalid},
		{"TLV length 65535", hdr(0x21, 0x00, []byte{0x01, 0xFF, 0xFF, 'h', '2'}), ErrInvalid},
		{"one stray byte", hdr(0x21, 0x11, addrs4, tlvALPN, []byte{0x04}), ErrInvalid},
		{"two stray bytes", hdr(0x21, 0x11, addrs4, []byte{0x04, 0x00}), ErrInvalid},
		{"bad CRC32C", badCRC, ErrInvalid},
		{"CRC32C of 3 bytes", hdr(0x21, 0x11, addrs4, []byte{0x03, 0x00, 0x03, 1, 2, 3}), ErrInvalid},
		{"CRC32C twice", hdr(0x21, 0x11, addrs4, tlvCRC, tlvCRC), ErrInvalid},
		{"IPv6 with one IPv4-mapped address", hdr(0x21, 0x21, addrs4in6[:16], addrs6[16:]), ErrInvalid},
	}
	sentinels := []error{io.EOF, io.ErrUnexpectedEOF, ErrNotProxy, ErrInvalid}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadHeader(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadHeader = %+v, %v; want error %v", h, err, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("ReadHeader error %v also matches %v", err, s)
				}
			}
			if !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// A header that announces too much is refused without reading its body, and
// one with a bad preamble is refused without waiting for more.
func TestReadHeaderStopsAtPreamble(t *testing.T) {
	for _, in := range [][]byte{
		cat(sig, []byte{0x21, 0x11, 0xFF, 0xFF}),
		cat(sig, []byte{0x31, 0x11, 0x00, 0x0C}),
		cat(sig, []byte{0x21, 0x31, 0x00, 0xD8}),
	} {
		r := &limitReader{data: in}
		if _, err := ReadHeader(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("ReadHeader(% x) = %v, want ErrInvalid", in, err)
		}
		if r.extra {
			t.Errorf("ReadHeader(% x) read past the preamble", in)
		}
	}
}

// limitReader serves data and records any read past its end, as a
// connection would block there.
type limitReader struct {
	data  []byte
	extra bool
}

func (r *limitReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.extra = true
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadHeaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(hdr(0x21, 0x11, addrs4)[:20]), iotest.ErrReader(boom))
	if _, err := ReadHeader(r); !errors.Is(err, boom) {
		t.Errorf("ReadHeader = %v, want %v", err, boom)
	}
}
