package certstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// startDNS serves, on one 127.0.0.1 port over UDP and TCP, A 127.0.0.1
// for zone and every name under it, no AAAA (nor anything else), and
// NXDOMAIN outside the zone. It stops when the test ends.
func startDNS(tb testing.TB, zone string) string {
	tb.Helper()
	pc, ln := listenUDPTCP(tb)
	zone = dns.Fqdn(strings.ToLower(zone))
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		w.WriteMsg(answer(zone, req))
	})
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	servers := []*dns.Server{
		{PacketConn: pc, Handler: h, NotifyStartedFunc: notify},
		{Listener: ln, Handler: h, NotifyStartedFunc: notify},
	}
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ActivateAndServe()
		}()
	}
	<-started
	<-started
	tb.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

// listenUDPTCP binds UDP and TCP on the same ephemeral loopback port.
func listenUDPTCP(tb testing.TB) (net.PacketConn, net.Listener) {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("certstest: dns listen: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	tb.Fatal("certstest: dns: no port free for both UDP and TCP")
	return nil, nil
}

func answer(zone string, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		if name != zone && !strings.HasSuffix(name, "."+zone) {
			m.Rcode = dns.RcodeNameError
			continue
		}
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
				A:   net.IPv4(127, 0, 0, 1),
			})
		}
	}
	return m
}
