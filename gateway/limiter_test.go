package gateway

import (
	"strconv"
	"testing"

	"github.com/sekisho/sekisho/auth"
)

func TestDeviceLimiter(t *testing.T) {
	pc1 := auth.Principal{Tenant: "acme", DeviceID: "pc-1"}
	pc2 := auth.Principal{Tenant: "acme", DeviceID: "pc-2"}
	betaPC1 := auth.Principal{Tenant: "beta", DeviceID: "pc-1"} // same id, other tenant

	for _, limit := range []int{1, 3} {
		t.Run("max="+strconv.Itoa(limit), func(t *testing.T) {
			d := newDeviceLimiter(limit)
			var releases []func()
			for i := range limit {
				rel, ok := d.acquire(pc1)
				if !ok {
					t.Fatalf("acquire %d of %d refused", i+1, limit)
				}
				releases = append(releases, rel)
			}
			if _, ok := d.acquire(pc1); ok {
				t.Fatalf("acquire %d accepted, max is %d", limit+1, limit)
			}
			for _, p := range []auth.Principal{pc2, betaPC1} {
				rel, ok := d.acquire(p)
				if !ok {
					t.Fatalf("%s/%s refused because of another device", p.Tenant, p.DeviceID)
				}
				rel()
			}

			releases[0]()
			rel, ok := d.acquire(pc1)
			if !ok {
				t.Fatal("acquire after a release refused")
			}
			releases[0] = rel
			if _, ok := d.acquire(pc1); ok {
				t.Fatal("acquire beyond max accepted after release and re-acquire")
			}

			for _, rel := range releases {
				rel()
			}
			d.mu.Lock()
			n := len(d.n)
			d.mu.Unlock()
			if n != 0 {
				t.Errorf("limiter keeps %d entries after every release, want 0: %v", n, d.n)
			}
		})
	}
}
