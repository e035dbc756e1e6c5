package proxyproto

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
)

var _ encoding.BinaryAppender = (*Header)(nil)

// AppendBinary appends the encoded header to b and returns the extended
// buffer.
//
// A Local header is sent with the UNSPEC family and no addresses (the
// receiver would discard them). A Proxy header is sent with the IPv4 family
// when both addresses are IPv4 (4-byte or IPv4-mapped IPv6), with the IPv6
// family when both are IPv6, and with UNSPEC when both are zero; anything
// else is an error. Zones are not sent.
//
// A TLV of type 0x03 (PP2_TYPE_CRC32C) asks for a checksum: its Value must be
// empty or 4 bytes long, and the checksum of the encoded header is written in
// its place.
//
// On error, which wraps ErrInvalid (an invalid command, mixed or missing
// addresses, a TLV value longer than 65535 bytes, a header longer than
// 65535+16 bytes), b is returned unchanged. Note that ReadHeader accepts only
// headers up to MaxHeaderLen.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	fam, src, dst, err := h.family()
	if err != nil {
		return b, err
	}
	n, err := tlvsLen(h.TLVs)
	if err != nil {
		return b, err
	}
	bodyLen, _ := addrLen(fam)
	if bodyLen += n; bodyLen > maxBodyLen {
		return b, fmt.Errorf("%w: header body of %d bytes, more than 65535", ErrInvalid, bodyLen)
	}
	start := len(b)
	b = append(b, signature[:]...)
	b = append(b, version2<<4|byte(h.Command), fam)
	b = binary.BigEndian.AppendUint16(b, uint16(bodyLen))
	b = appendAddrs(b, fam, src, dst)
	return appendTLVs(b, start, h.TLVs), nil
}

// family chooses the address family to send and returns the addresses in it.
func (h *Header) family() (fam byte, src, dst netip.AddrPort, err error) {
	switch {
	case h.Command == Local:
		return famUnspec, src, dst, nil
	case h.Command != Proxy:
		return 0, src, dst, fmt.Errorf("%w: command %#x", ErrInvalid, uint8(h.Command))
	case !h.Source.IsValid() && !h.Destination.IsValid():
		return famUnspec, src, dst, nil
	case !h.Source.IsValid() || !h.Destination.IsValid():
		return 0, src, dst, fmt.Errorf("%w: only one of source %v and destination %v is set", ErrInvalid, h.Source, h.Destination)
	}
	s, d := h.Source.Addr().Unmap(), h.Destination.Addr().Unmap()
	switch {
	case s.Is4() && d.Is4():
		fam = famTCP4
	case s.Is6() && d.Is6():
		fam = famTCP6
	default:
		return 0, src, dst, fmt.Errorf("%w: source %v and destination %v are of different families", ErrInvalid, h.Source, h.Destination)
	}
	return fam, netip.AddrPortFrom(s, h.Source.Port()), netip.AddrPortFrom(d, h.Destination.Port()), nil
}

// tlvsLen checks the TLVs to send and returns their encoded length.
func tlvsLen(tlvs []TLV) (int, error) {
	n, crcs := 0, 0
	for i, t := range tlvs {
		if len(t.Value) > maxBodyLen {
			return 0, fmt.Errorf("%w: TLV %d (type %#04x) is %d bytes long, more than 65535", ErrInvalid, i, t.Type, len(t.Value))
		}
		n += tlvHeaderLen + len(t.Value)
		if t.Type != typeCRC32C {
			continue
		}
		if len(t.Value) != 0 && len(t.Value) != crcLen {
			return 0, fmt.Errorf("%w: CRC32C TLV of length %d, want 0 or 4", ErrInvalid, len(t.Value))
		}
		if crcs++; crcs > 1 {
			return 0, fmt.Errorf("%w: repeated CRC32C TLV", ErrInvalid)
		}
		n += crcLen - len(t.Value)
	}
	return n, nil
}

// appendAddrs appends the address block of family fam.
func appendAddrs(b []byte, fam byte, src, dst netip.AddrPort) []byte {
	switch fam {
	case famTCP4:
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	case famTCP6:
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	default:
		return b
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// appendTLVs appends the TLVs of the header that starts at b[start:] and
// fills in its CRC32C TLV, if any (AppendBinary checked there is at most one).
func appendTLVs(b []byte, start int, tlvs []TLV) []byte {
	crcOff := -1
	for _, t := range tlvs {
		b = append(b, t.Type)
		if t.Type != typeCRC32C {
			b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
			b = append(b, t.Value...)
			continue
		}
		b = binary.BigEndian.AppendUint16(b, crcLen)
		crcOff = len(b) - start
		b = append(b, 0, 0, 0, 0)
	}
	if crcOff >= 0 {
		hdr := b[start:]
		binary.BigEndian.PutUint32(hdr[crcOff:], crc32.Checksum(hdr, castagnoli))
	}
	return b
}
