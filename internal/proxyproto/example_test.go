package proxyproto_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"

	"github.com/sekisho/sekisho/internal/proxyproto"
)

func ExampleReadHeader() {
	// What a balancer sends in front of a client's stream.
	h := proxyproto.Header{
		Command:     proxyproto.Proxy,
		Source:      netip.MustParseAddrPort("192.0.2.1:56324"),
		Destination: netip.MustParseAddrPort("198.51.100.2:443"),
		TLVs:        []proxyproto.TLV{{Type: 0x03}}, // ask for a CRC32C
	}
	b, err := h.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	stream := bytes.NewReader(append(b, "client hello..."...))

	got, err := proxyproto.ReadHeader(stream)
	if err != nil {
		panic(err)
	}
	rest, _ := io.ReadAll(stream)
	fmt.Println(got.Command, got.Source, "->", got.Destination)
	fmt.Printf("%q\n", rest)
	// Output:
	// PROXY 192.0.2.1:56324 -> 198.51.100.2:443
	// "client hello..."
}
