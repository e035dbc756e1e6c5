package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// udpProxy forwards datagrams between clients and a target, and can drop
// everything, as a firewall that blocks UDP does.
type udpProxy struct {
	conn    *net.UDPConn
	target  *net.UDPAddr
	blocked atomic.Bool
	mu      sync.Mutex
	peers   map[string]*net.UDPConn // client address -> socket toward the target
	wg      sync.WaitGroup
}

func startUDPProxy(t *testing.T, target string) *udpProxy {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{conn: c, target: ta, peers: map[string]*net.UDPConn{}}
	p.wg.Go(p.run)
	t.Cleanup(p.close)
	return p
}

func (p *udpProxy) addr() string { return p.conn.LocalAddr().String() }

func (p *udpProxy) run() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if p.blocked.Load() {
			continue
		}
		up := p.peer(from)
		if up != nil {
			up.Write(buf[:n])
		}
	}
}

// peer returns the socket toward the target for a client, starting its
// return path on first use.
func (p *udpProxy) peer(from *net.UDPAddr) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.peers[from.String()]; ok {
		return c
	}
	c, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil
	}
	p.peers[from.String()] = c
	p.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if !p.blocked.Load() {
				p.conn.WriteToUDP(buf[:n], from)
			}
		}
	})
	return c
}

func (p *udpProxy) close() {
	p.conn.Close()
	p.mu.Lock()
	for _, c := range p.peers {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
