package connector

import (
	"net"
	"net/netip"
	"time"

	"github.com/sekisho/sekisho/internal/proxyproto"
	"github.com/sekisho/sekisho/tunnel"
)

// PROXY v2 TLV types (in the custom range 0xE0-0xEF) that tell a service
// which device is behind a CONNECT stream.
const (
	TLVTenant     = 0xE0
	TLVDeviceID   = 0xE1
	TLVCertSHA256 = 0xE2
)

// writeProxyHeader sends a PROXY v2 header on conn: the device's address as
// source, the service's as destination, and the device's identity in TLVs.
func writeProxyHeader(conn net.Conn, tenant string, h *tunnel.Header, timeout time.Duration) error {
	hdr := &proxyproto.Header{Command: proxyproto.Local, TLVs: []proxyproto.TLV{
		{Type: TLVTenant, Value: []byte(tenant)},
		{Type: TLVDeviceID, Value: []byte(h.DeviceID)},
	}}
	if len(h.CertSHA256) > 0 {
		hdr.TLVs = append(hdr.TLVs, proxyproto.TLV{Type: TLVCertSHA256, Value: h.CertSHA256})
	}
	src, err1 := netip.ParseAddrPort(h.ClientAddr)
	dst, err2 := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err1 == nil && err2 == nil && src.Addr().Unmap().Is4() == dst.Addr().Unmap().Is4() {
		hdr.Command, hdr.Source, hdr.Destination = proxyproto.Proxy, src, dst
	}
	b, err := hdr.AppendBinary(nil)
	if err != nil {
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(timeout))
	defer conn.SetWriteDeadline(time.Time{})
	_, err = conn.Write(b)
	return err
}
