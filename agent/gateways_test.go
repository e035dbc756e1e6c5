package agent

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
)

// TestClientFailoverSticky checks that the client moves past a dead
// gateway and then starts from the one that worked.
func TestClientFailoverSticky(t *testing.T) {
	g := newFakeGateway(t)
	dead := deadAddr(t)
	var mu sync.Mutex
	var dialed []string
	a := g.newAgent(t, func(c *Config) {
		c.Gateways = append([]GatewayConfig{{Address: dead, RootCAs: g.server.Roots}}, c.Gateways...)
		c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	})
	for range 2 {
		conn, err := a.Client().DialConnect(context.Background(), "echo")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{dead, g.addr, g.addr}; !slices.Equal(dialed, want) {
		t.Fatalf("dialed %v, want %v", dialed, want)
	}
	if a.Client().Gateway() != g.addr {
		t.Fatalf("current gateway %s, want %s", a.Client().Gateway(), g.addr)
	}
}
