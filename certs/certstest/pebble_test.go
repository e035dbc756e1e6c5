package certstest

import (
	"net"
	"testing"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, IgnoreLibraryGoroutines()...)
}

// The test resolver answers A 127.0.0.1 inside the zone, over UDP and TCP,
// no AAAA, and NXDOMAIN outside.
func TestDNS(t *testing.T) {
	addr := startDNS(t, "Sekisho.Test")
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range []struct {
			name    string
			qtype   uint16
			rcode   int
			answers int
		}{
			{"gw.sekisho.test.", dns.TypeA, dns.RcodeSuccess, 1},
			{"sekisho.test.", dns.TypeA, dns.RcodeSuccess, 1},
			{"a.b.SEKISHO.test.", dns.TypeA, dns.RcodeSuccess, 1},
			{"gw.sekisho.test.", dns.TypeAAAA, dns.RcodeSuccess, 0},
			{"notsekisho.test.", dns.TypeA, dns.RcodeNameError, 0},
			{"example.com.", dns.TypeA, dns.RcodeNameError, 0},
		} {
			m := new(dns.Msg)
			m.SetQuestion(tt.name, tt.qtype)
			in, _, err := (&dns.Client{Net: network}).Exchange(m, addr)
			if err != nil {
				t.Fatalf("%s %s: %v", network, tt.name, err)
			}
			if in.Rcode != tt.rcode || len(in.Answer) != tt.answers {
				t.Errorf("%s %s %s: rcode %d, %d answers; want %d, %d", network, tt.name, dns.TypeToString[tt.qtype], in.Rcode, len(in.Answer), tt.rcode, tt.answers)
				continue
			}
			if tt.answers == 1 && !in.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("%s %s: answer %v", network, tt.name, in.Answer[0])
			}
		}
	}
}

// The relay forwards to the target set last, counts connections, and
// drops them while no target is set.
func TestRelay(t *testing.T) {
	r := startRelay(t)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := c.Read(buf); err == nil {
			c.Write(buf)
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", r.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Error("read data with no target")
	}
	c.Close()
	r.setTarget(echo.Addr().String())
	c = dial()
	defer c.Close()
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
		t.Errorf("echo through relay: %q, %v", buf, err)
	}
	<-done
	if n := r.count.Load(); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
}
