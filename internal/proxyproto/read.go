package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// ReadHeader reads one PROXY v2 header from r. It reads the 16-byte preamble,
// checks it, and then reads exactly the length it announces, never a byte
// more, so whatever follows the header is still unread in r.
//
// Errors wrap ErrNotProxy when the stream does not start with the signature
// (the bytes read are then lost: a caller that wants to fall back must peek
// through its own buffer), ErrInvalid when the header is malformed or
// unsupported (see the package documentation) or longer than MaxHeaderLen,
// and the reader's error otherwise: io.EOF when r ends before the first
// byte, io.ErrUnexpectedEOF when it ends inside the header.
//
// A LOCAL header is accepted with any supported family and its addresses are
// skipped. A CRC32C TLV, if present, must match.
func ReadHeader(r io.Reader) (*Header, error) {
	var pre [preambleLen]byte
	n, err := io.ReadFull(r, pre[:])
	if m := min(n, sigLen); string(pre[:m]) != string(signature[:m]) {
		return nil, fmt.Errorf("%w: signature mismatch", ErrNotProxy)
	}
	if err != nil {
		return nil, fmt.Errorf("proxyproto: read preamble: %w", err)
	}
	bodyLen, err := checkPreamble(pre)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, preambleLen+bodyLen)
	copy(buf, pre[:])
	if _, err := io.ReadFull(r, buf[preambleLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("proxyproto: read header: %w", err)
	}
	return parse(buf)
}

// checkPreamble validates version, command, family and length, and returns
// the length of the rest of the header.
func checkPreamble(pre [preambleLen]byte) (int, error) {
	if v := pre[12] >> 4; v != version2 {
		return 0, fmt.Errorf("%w: version %d, want 2", ErrInvalid, v)
	}
	if c := Command(pre[12] & 0x0F); c != Local && c != Proxy {
		return 0, fmt.Errorf("%w: command %#x", ErrInvalid, uint8(c))
	}
	need, err := addrLen(pre[13])
	if err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(pre[14:]))
	if n > MaxHeaderLen-preambleLen {
		return 0, fmt.Errorf("%w: length %d exceeds the limit of %d", ErrInvalid, n, MaxHeaderLen-preambleLen)
	}
	if n < need {
		return 0, fmt.Errorf("%w: length %d too short for family %#04x", ErrInvalid, n, pre[13])
	}
	return n, nil
}

// addrLen returns the size of the address block of a supported family.
func addrLen(fam byte) (int, error) {
	switch fam {
	case famUnspec:
		return 0, nil
	case famTCP4:
		return addrLen4, nil
	case famTCP6:
		return addrLen6, nil
	}
	if fam>>4 <= 3 && fam&0x0F <= 2 {
		return 0, fmt.Errorf("%w: unsupported family %#04x (only TCP over IPv4 or IPv6, or UNSPEC)", ErrInvalid, fam)
	}
	return 0, fmt.Errorf("%w: family %#04x", ErrInvalid, fam)
}

// parse decodes a whole header whose preamble checkPreamble accepted.
func parse(buf []byte) (*Header, error) {
	h := &Header{Command: Command(buf[12] & 0x0F)}
	n, _ := addrLen(buf[13])
	if h.Command == Proxy && n > 0 {
		var err error
		h.Source, h.Destination, err = parseAddrs(buf[preambleLen : preambleLen+n])
		if err != nil {
			return nil, err
		}
	}
	tlvs, crcOff, err := parseTLVs(buf, preambleLen+n)
	if err != nil {
		return nil, err
	}
	h.TLVs = tlvs
	if crcOff >= 0 {
		if got, want := binary.BigEndian.Uint32(buf[crcOff:]), headerCRC(buf, crcOff); got != want {
			return nil, fmt.Errorf("%w: CRC32C %#010x, computed %#010x", ErrInvalid, got, want)
		}
	}
	return h, nil
}

// parseAddrs decodes an IPv4 (12-byte) or IPv6 (36-byte) address block.
func parseAddrs(b []byte) (src, dst netip.AddrPort, err error) {
	var s, d netip.Addr
	if len(b) == addrLen4 {
		s, d = netip.AddrFrom4([4]byte(b[0:4])), netip.AddrFrom4([4]byte(b[4:8]))
	} else {
		s, d = netip.AddrFrom16([16]byte(b[0:16])).Unmap(), netip.AddrFrom16([16]byte(b[16:32])).Unmap()
		if s.Is4() != d.Is4() {
			// A connection has both ends in one family.
			return src, dst, fmt.Errorf("%w: IPv6 addresses %v and %v, only one IPv4-mapped", ErrInvalid, s, d)
		}
	}
	ports := b[len(b)-4:]
	src = netip.AddrPortFrom(s, binary.BigEndian.Uint16(ports[0:2]))
	dst = netip.AddrPortFrom(d, binary.BigEndian.Uint16(ports[2:4]))
	return src, dst, nil
}

// parseTLVs splits buf[off:] into TLVs, which must fill it exactly. The
// values alias buf. It also returns the offset in buf of the CRC32C value,
// or -1 if there is none.
func parseTLVs(buf []byte, off int) ([]TLV, int, error) {
	var tlvs []TLV
	crcOff := -1
	for off < len(buf) {
		if len(buf)-off < tlvHeaderLen {
			return nil, -1, fmt.Errorf("%w: %d stray bytes after the last TLV", ErrInvalid, len(buf)-off)
		}
		typ, n := buf[off], int(binary.BigEndian.Uint16(buf[off+1:]))
		off += tlvHeaderLen
		if n > len(buf)-off {
			return nil, -1, fmt.Errorf("%w: TLV %#04x of length %d overruns the header by %d bytes", ErrInvalid, typ, n, n-(len(buf)-off))
		}
		if typ == typeCRC32C {
			if n != crcLen {
				return nil, -1, fmt.Errorf("%w: CRC32C TLV of length %d, want 4", ErrInvalid, n)
			}
			if crcOff >= 0 {
				return nil, -1, fmt.Errorf("%w: repeated CRC32C TLV", ErrInvalid)
			}
			crcOff = off
		}
		tlvs = append(tlvs, TLV{Type: typ, Value: buf[off : off+n : off+n]})
		off += n
	}
	return tlvs, crcOff, nil
}
