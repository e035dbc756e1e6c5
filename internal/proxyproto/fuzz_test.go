package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzReadHeader(f *testing.F) {
	for _, seed := range [][]byte{
		hdr(0x21, 0x11, addrs4),
		hdr(0x21, 0x21, addrs6),
		hdr(0x21, 0x21, addrs4in6),
		hdr(0x20, 0x00),
		hdr(0x20, 0x11, addrs4),
		hdr(0x21, 0x00, tlvALPN),
		hdr(0x21, 0x11, addrs4, tlvALPN, tlvAuth, tlvNoop, tlvCustom),
		hdr(0x21, 0x11, addrs4, tlvCRC),
		hdr(0x21, 0x11, addrs4, tlvCRC, []byte("trailing stream bytes")),
		hdr(0x21, 0x11, addrs4, []byte{0x01, 0x00, 0x03, 'h', '2'}),
		hdr(0x21, 0x31, make([]byte, 216)),
		hdr(0x21, 0x21, addrs4in6[:16], addrs6[16:]),
		cat(sig, []byte{0x21, 0x11, 0xFF, 0xFF}),
		[]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
		sig[:7],
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := ReadHeader(r)
		if err != nil {
			for _, s := range []error{ErrNotProxy, ErrInvalid, io.ErrUnexpectedEOF, io.EOF} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("ReadHeader error %v is none of the documented ones", err)
		}
		n := len(data) - r.Len()
		if n > MaxHeaderLen || n != 16+int(data[14])<<8+int(data[15]) {
			t.Fatalf("ReadHeader consumed %d bytes of a header announcing %d", n, 16+int(data[14])<<8+int(data[15]))
		}
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("AppendBinary(%+v) of an accepted header: %v", *h, err)
		}
		if len(b) > n {
			t.Fatalf("AppendBinary wrote %d bytes for a header read from %d", len(b), n)
		}
		h2, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("ReadHeader(AppendBinary(%+v)): %v", *h, err)
		}
		if !equivalent(h, h2) {
			t.Fatalf("round trip of %+v = %+v", *h, *h2)
		}
		if b2, err := h2.AppendBinary(nil); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding = % x, %v; want % x", b2, err, b)
		}
	})
}
