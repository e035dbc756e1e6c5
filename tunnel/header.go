package tunnel

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// HeaderVersion is the version of the stream header this package writes
// and the newest it reads.
const HeaderVersion = 1

// MaxHeaderLen is the largest header body accepted, in bytes.
const MaxHeaderLen = 4096

// Header errors. Wrapped errors carry the detail.
var (
	ErrHeaderVersion  = errors.New("unsupported stream header version")
	ErrHeaderTooLarge = errors.New("stream header too large")
	ErrHeaderInvalid  = errors.New("malformed stream header")
)

// Kind is what a stream carries.
type Kind uint8

// Stream kinds.
const (
	// KindHTTP streams carry HTTP/1.1 requests of many devices, one after
	// the other: the gateway pools them as keep-alive connections, and the
	// identity of each request travels in HTTP headers.
	KindHTTP Kind = 1
	// KindConnect streams carry one device's raw TCP connection.
	KindConnect Kind = 2
	// KindEnroll streams carry one enrollment request.
	KindEnroll Kind = 3
	// KindPayload streams carry one HTTP/1.1 request for a payload: the
	// connector admits them under the tenant's relay budget and paces
	// their bytes. They are never pooled, so one stream is one download.
	KindPayload Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindHTTP:
		return "http"
	case KindConnect:
		return "connect"
	case KindEnroll:
		return "enroll"
	case KindPayload:
		return "payload"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// Header begins every stream the gateway opens.
type Header struct {
	Kind    Kind
	Service string
	// Device identity and client address, set for KindConnect and
	// KindEnroll only: KindHTTP streams carry many devices.
	DeviceID   string
	CertSHA256 []byte // nil or sha256.Size bytes
	ClientAddr string
}

// Header field tags.
const (
	tagService    = 1
	tagDeviceID   = 2
	tagCertSHA256 = 3
	tagClientAddr = 4
)

// AppendBinary appends the encoded header to b.
//
//	version:u8  length:u16  kind:u8  field*
//	field = tag:u8 len:u8 value[len]
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	if h.Service == "" {
		return nil, fmt.Errorf("%w: no service", ErrHeaderInvalid)
	}
	if h.CertSHA256 != nil && len(h.CertSHA256) != sha256.Size {
		return nil, fmt.Errorf("%w: certificate digest of %d bytes", ErrHeaderInvalid, len(h.CertSHA256))
	}
	for _, f := range [...]struct{ name, val string }{
		{"service", h.Service}, {"device id", h.DeviceID}, {"client address", h.ClientAddr},
	} {
		if !utf8.ValidString(f.val) {
			return nil, fmt.Errorf("%w: %s is not UTF-8", ErrHeaderInvalid, f.name)
		}
	}
	start := len(b)
	b = append(b, HeaderVersion, 0, 0, byte(h.Kind))
	var err error
	for _, f := range []struct {
		tag byte
		val []byte
	}{
		{tagService, []byte(h.Service)},
		{tagDeviceID, []byte(h.DeviceID)},
		{tagCertSHA256, h.CertSHA256},
		{tagClientAddr, []byte(h.ClientAddr)},
	} {
		if b, err = appendField(b, f.tag, f.val); err != nil {
			return nil, err
		}
	}
	n := len(b) - start - 3
	if n > MaxHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrHeaderTooLarge, n)
	}
	binary.BigEndian.PutUint16(b[start+1:], uint16(n))
	return b, nil
}

func appendField(b []byte, tag byte, val []byte) ([]byte, error) {
	if len(val) == 0 {
		return b, nil
	}
	if len(val) > 255 {
		return nil, fmt.Errorf("%w: field %d has %d bytes, max 255", ErrHeaderInvalid, tag, len(val))
	}
	b = append(b, tag, byte(len(val)))
	return append(b, val...), nil
}

// ReadHeader reads one stream header from r, reading nothing past it.
// Unknown field tags are skipped, so newer gateways may add fields.
func ReadHeader(r io.Reader) (*Header, error) {
	body, err := readFrame(r, MaxHeaderLen)
	if err != nil {
		return nil, err
	}
	if len(body) < 1 {
		return nil, fmt.Errorf("%w: no kind", ErrHeaderInvalid)
	}
	h := &Header{Kind: Kind(body[0])}
	var seen uint8 // bit i: known tag i was read
	err = walkFields(body[1:], func(tag byte, val []byte) error {
		if tag < tagService || tag > tagClientAddr {
			return nil // unknown: skipped, however often it comes
		}
		if seen&(1<<tag) != 0 {
			return fmt.Errorf("%w: field %d repeated", ErrHeaderInvalid, tag)
		}
		seen |= 1 << tag
		return h.setField(tag, val)
	})
	if err != nil {
		return nil, err
	}
	if h.Service == "" {
		return nil, fmt.Errorf("%w: no service", ErrHeaderInvalid)
	}
	return h, nil
}

func (h *Header) setField(tag byte, val []byte) error {
	switch tag {
	case tagService:
		return setText(&h.Service, "service", val)
	case tagDeviceID:
		return setText(&h.DeviceID, "device id", val)
	case tagClientAddr:
		return setText(&h.ClientAddr, "client address", val)
	case tagCertSHA256:
		if len(val) != sha256.Size {
			return fmt.Errorf("%w: certificate digest of %d bytes", ErrHeaderInvalid, len(val))
		}
		h.CertSHA256 = append([]byte(nil), val...)
	}
	return nil
}

func setText(dst *string, name string, val []byte) error {
	if !utf8.Valid(val) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrHeaderInvalid, name)
	}
	*dst = string(val)
	return nil
}

// readFrame reads version:u8 length:u16 and then the body, checking the
// version and the limit before reading the body.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var pre [3]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("read stream header: %w", err)
	}
	if pre[0] != HeaderVersion {
		return nil, fmt.Errorf("%w: %d (this end speaks %d)", ErrHeaderVersion, pre[0], HeaderVersion)
	}
	n := int(binary.BigEndian.Uint16(pre[1:]))
	if n > limit {
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrHeaderTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("read stream header body: %w", noEOF(err))
	}
	return body, nil
}

func walkFields(b []byte, f func(tag byte, val []byte) error) error {
	for len(b) > 0 {
		if len(b) < 2 {
			return fmt.Errorf("%w: truncated field", ErrHeaderInvalid)
		}
		tag, n := b[0], int(b[1])
		if len(b) < 2+n {
			return fmt.Errorf("%w: field %d overruns the header", ErrHeaderInvalid, tag)
		}
		if err := f(tag, b[2:2+n]); err != nil {
			return err
		}
		b = b[2+n:]
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
