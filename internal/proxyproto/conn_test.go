package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestConnAddrs(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tests := []struct {
		name         string
		h            *Header
		remote, addr string
	}{
		{"proxy tcp4", &Header{Command: Proxy, Source: src4, Destination: dst4}, "192.0.2.1:56324", "198.51.100.2:443"},
		{"proxy tcp6", &Header{Command: Proxy, Source: src6, Destination: dst6}, "[2001:db8::1]:56324", "[2001:db8::2]:443"},
		{"proxy unknown", &Header{Command: Proxy}, "pipe", "pipe"},
		{"local", &Header{Command: Local, Source: src4, Destination: dst4}, "pipe", "pipe"},
		{"nil header", nil, "pipe", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConn(c1, tt.h)
			if got := c.RemoteAddr().String(); got != tt.remote {
				t.Errorf("RemoteAddr = %s, want %s", got, tt.remote)
			}
			if got := c.LocalAddr().String(); got != tt.addr {
				t.Errorf("LocalAddr = %s, want %s", got, tt.addr)
			}
			if tt.remote != "pipe" {
				if _, ok := c.RemoteAddr().(*net.TCPAddr); !ok {
					t.Errorf("RemoteAddr is a %T, want *net.TCPAddr", c.RemoteAddr())
				}
			}
			if c.NetConn() != c1 {
				t.Errorf("NetConn = %v, want the wrapped conn", c.NetConn())
			}
		})
	}
}

// Over real TCP: the header is read without touching the stream behind it,
// and the wrapped connection passes reads, writes and CloseWrite through.
func TestConnTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	b, err := (&Header{Command: Proxy, Source: src4, Destination: dst4}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write(append(b, "ping"...)); err != nil {
		t.Fatal(err)
	}
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(raw, h)
	defer c.Close()
	for _, set := range []func(time.Time) error{c.SetDeadline, c.SetReadDeadline, c.SetWriteDeadline} {
		if err := set(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.RemoteAddr().String(); got != src4.String() {
		t.Errorf("RemoteAddr = %s, want %s", got, src4)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read after header = %q, %v; want ping", buf, err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	cw, ok := c.NetConn().(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("NetConn is a %T, without CloseWrite", c.NetConn())
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, []byte("pong")) {
		t.Errorf("client read %q, %v; want pong then EOF", got, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := raw.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close = %v, want net.ErrClosed", err)
	}
}

func TestCommandString(t *testing.T) {
	for c, want := range map[Command]string{Local: "LOCAL", Proxy: "PROXY", 7: "Command(7)"} {
		if got := c.String(); got != want {
			t.Errorf("Command(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
}
