package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestNewNotEnrolled(t *testing.T) {
	_, err := New(Config{Gateways: []GatewayConfig{{Address: "gw.example:443"}}, StateDir: t.TempDir()})
	if !errors.Is(err, ErrNotEnrolled) || !strings.Contains(err.Error(), "run sekisho agent enroll first") {
		t.Fatalf("err = %v, want not enrolled", err)
	}
}

// TestRenewLoop drives the renewal loop with an injected clock: it waits
// until 2/3 of the lifetime, retries failures with backoff, then waits for
// the new certificate's turn.
func TestRenewLoop(t *testing.T) {
	g := newFakeGateway(t)
	g.set(func(g *fakeGateway) { g.renewFailures = 2 })
	clk := newFakeClock(time.Now())
	a := g.newAgent(t, func(c *Config) {
		c.Now, c.After = clk.Now, clk.After
		c.Rand = func() float64 { return 0.5 } // delays of 3/4 of the backoff step
		c.RetryMin, c.RetryMax = 10*time.Second, time.Minute
	})
	old := a.Identity().Leaf()
	due := func() time.Duration {
		leaf := a.Identity().Leaf()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		return leaf.NotBefore.Add(time.Duration(float64(life) * DefaultRenewAt)).Sub(clk.Now())
	}
	runAgent(t, a)
	clk.expect(t, due())
	w := clk.next(t) // first failure
	if w.d != 7500*time.Millisecond || a.Status().LastRenewalError == "" {
		t.Fatalf("retry in %v with status %+v, want 7.5s and the error", w.d, a.Status())
	}
	w.fire <- clk.Now()
	clk.expect(t, 15*time.Second) // second failure
	w = clk.next(t)               // renewed: the new certificate's turn
	if a.Identity().Leaf().Equal(old) {
		t.Fatal("certificate not renewed")
	}
	if want := max(due(), 10*time.Second); w.d != want {
		t.Fatalf("next renewal in %v, want %v", w.d, want)
	}
	if s := a.Status(); s.LastRenewalError != "" || !s.NextRenewal.Equal(clk.Now().Add(w.d)) {
		t.Fatalf("status %+v", s)
	}
}

func TestNextRenewalHint(t *testing.T) {
	g := newFakeGateway(t)
	a := g.newAgent(t, func(c *Config) { c.RenewAt = 0.5 })
	leaf := a.Identity().Leaf()
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	for _, tc := range []struct {
		name string
		hint time.Time
		want time.Time
	}{
		{"no hint", time.Time{}, half},
		{"earlier hint", half.Add(-time.Minute), half.Add(-time.Minute)},
		{"later hint", half.Add(time.Minute), half},
		{"hint of an older certificate", leaf.NotBefore.Add(-time.Hour), half},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.hint.Store(&tc.hint)
			if got := a.nextRenewal(); !got.Equal(tc.want) {
				t.Fatalf("next renewal %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRunListenConflict(t *testing.T) {
	g := newFakeGateway(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	a := g.newAgent(t, func(c *Config) {
		c.HTTPProxy.Listen = "127.0.0.1:0"
		c.Forwards = []Forward{{Listen: busy.Addr().String(), Service: "echo"}}
	})
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "forward to echo") {
		t.Fatalf("Run = %v, want a listen error", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	g := newFakeGateway(t)
	a := g.newAgent(t, nil)
	a.Close()
	a.Close()
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("Run after Close succeeded")
	}

	b := g.newAgent(t, nil)
	errc := make(chan error, 1)
	go func() { errc <- b.Run(context.Background()) }()
	select {
	case <-b.Ready():
	case <-time.After(hang):
		t.Fatal("agent not ready")
	}
	b.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v after Close, want nil", err)
		}
	case <-time.After(hang):
		t.Fatal("Run did not return after Close")
	}
}

func TestRunAsServiceOutsideServiceManager(t *testing.T) {
	handled, err := RunAsService("sekisho-agent", func(context.Context) error {
		t.Error("run called outside the service manager")
		return nil
	})
	if handled || err != nil {
		t.Fatalf("handled %v, err %v; want false, nil", handled, err)
	}
}
