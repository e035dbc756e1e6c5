package demo

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	sum, err := Run(context.Background(), Options{
		Agents: 4, Duration: 1500 * time.Millisecond, Interval: 20 * time.Millisecond, PayloadSize: 256 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 || len(sum.Errors) != 0 {
		t.Fatalf("failures: %d %v", sum.Failed, sum.Errors)
	}
	for _, kind := range []string{"policy", "inventory", "patch", "relayed"} {
		if sum.ByKind[kind] == 0 {
			t.Errorf("no %s request succeeded: %v", kind, sum.ByKind)
		}
	}
	// Every patch is 256 KiB and checked byte for byte by the agent; the
	// catalogued ones were redirected to the CDN and verified by digest,
	// so only the relayed ones crossed the tunnel.
	const size = 256 << 10
	if sum.BytesRelay < (sum.ByKind["patch"]+sum.ByKind["relayed"])*size {
		t.Errorf("bytes received %d < %d patches × 256 KiB", sum.BytesRelay, sum.ByKind["patch"]+sum.ByKind["relayed"])
	}
	if sum.Payloads.Verified != sum.ByKind["patch"] || sum.RedirectedBytes != sum.ByKind["patch"]*size ||
		sum.Payloads.FromCDN != sum.RedirectedBytes || sum.Payloads.VerifyFailures != 0 {
		t.Errorf("payloads: %+v, redirected %d bytes, for %d catalogued patches", sum.Payloads, sum.RedirectedBytes, sum.ByKind["patch"])
	}
	if sum.Payloads.Relayed != sum.ByKind["relayed"]*size || sum.TunnelBytes < sum.Payloads.Relayed ||
		sum.TunnelBytes >= sum.Payloads.Relayed+sum.RedirectedBytes {
		t.Errorf("tunnel carried %d bytes for %d relayed payload bytes and %d redirected", sum.TunnelBytes, sum.Payloads.Relayed, sum.RedirectedBytes)
	}
	if sum.P50ms <= 0 || sum.P99ms < sum.P50ms || sum.Transport != "tcp" || sum.Agents != 4 {
		t.Errorf("odd summary: %+v", sum)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	sum, err := Run(ctx, Options{Agents: 2, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Run took %v after cancel", d)
	}
	if sum.RequestsOK == 0 {
		t.Fatal("no request succeeded before the cancel")
	}
}

func TestRunOverQUIC(t *testing.T) {
	sum, err := Run(context.Background(), Options{
		Agents: 3, Duration: time.Second, Interval: 20 * time.Millisecond, PayloadSize: 128 << 10,
		Transport: "quic", AgentTransport: "quic",
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 || sum.RequestsOK == 0 || sum.Transport != "quic" || sum.AgentTransport != "quic" {
		t.Fatalf("summary %+v", sum)
	}
}
