package proxyproto

import (
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Command says whether a header describes a relayed connection or one that
// the proxy made on its own.
type Command uint8

const (
	// Local marks a connection made by the proxy itself (a health check,
	// say): the receiver uses the connection's real endpoints.
	Local Command = 0
	// Proxy marks a connection relayed on behalf of the client that the
	// header describes.
	Proxy Command = 1
)

// String returns "LOCAL", "PROXY" or the number of an invalid command.
func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return fmt.Sprintf("Command(%d)", uint8(c))
}

// TLV is a type-length-value extension that follows the addresses in a
// header. Value is at most 65535 bytes long. The types are registered in the
// PROXY protocol specification (0x01 ALPN, 0x02 authority, 0x03 CRC32C,
// 0x04 no-op, 0x05 unique id, 0x20 SSL, ...); 0xE0-0xEF are for private use.
type TLV struct {
	Type  uint8
	Value []byte
}

// Header is a PROXY protocol version 2 header.
//
// Source and Destination are the client's address and the address it
// connected to, both TCP. They are zero (not IsValid) for Local and for a
// Proxy header of unknown origin (the UNSPEC family). IPv4 addresses are
// always 4-byte addresses: IPv4-mapped IPv6 addresses are unmapped when read
// and sent as IPv4 when written.
type Header struct {
	Command     Command
	Source      netip.AddrPort
	Destination netip.AddrPort
	TLVs        []TLV
}

// MaxHeaderLen is the largest header that ReadHeader accepts, preamble
// included.
//
// The largest address block it supports is 36 bytes (IPv6), so 1024 leaves
// 972 bytes for TLVs: room for everything a balancer usually adds (ALPN, an
// authority of up to 255 bytes, a unique id of up to 128 bytes, CRC32C, a
// cloud endpoint id, an SSL TLV with version, cipher and common name) with
// hundreds of bytes to spare, while one connection that has not yet proved
// anything costs at most one small allocation.
const MaxHeaderLen = 1024

var (
	// ErrNotProxy means that the stream does not start with the PROXY v2
	// signature: a client (a TLS ClientHello, an HTTP request, a v1 header)
	// spoke first instead of a balancer.
	ErrNotProxy = errors.New("proxyproto: not a PROXY v2 header")
	// ErrInvalid means that a header (read or to be written) breaks the
	// specification or is not supported here: its version, command,
	// family, lengths or TLV layout.
	ErrInvalid = errors.New("proxyproto: invalid PROXY v2 header")
)

// Wire layout.
const (
	preambleLen  = 16 // signature, version and command, family, length
	sigLen       = 12
	version2     = 0x2
	famUnspec    = 0x00 // AF_UNSPEC, UNSPEC
	famTCP4      = 0x11 // AF_INET, STREAM
	famTCP6      = 0x21 // AF_INET6, STREAM
	addrLen4     = 12   // source and destination address, source and destination port
	addrLen6     = 36
	tlvHeaderLen = 3 // type, 2-byte length
	typeCRC32C   = 0x03
	crcLen       = 4
	maxBodyLen   = 1<<16 - 1 // what the 2-byte length can announce
)

var signature = [sigLen]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// castagnoli is the read-only CRC32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// headerCRC returns the CRC32C of the header b with the 4-byte checksum at
// b[off:] taken as zero.
func headerCRC(b []byte, off int) uint32 {
	var zero [crcLen]byte
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, b[off+crcLen:])
}
