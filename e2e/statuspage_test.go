package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/internal/admin/admintest"
)

// TestStatusPageShowsLiveTraffic renders the gateway's status page in
// headless Chromium while agents work: it shows the tenant's connector and
// a request count that is not zero. The screenshot is kept in artifacts/.
func TestStatusPageShowsLiveTraffic(t *testing.T) {
	browser := admintest.Browser(t)
	acme := newTenant(t, "acme")
	w := startGateway(t, nil, acme)
	core := startCore(t, echoHeaders)
	w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	w.waitServed(t, "acme", 2)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		cert := certstest.Agent(t, acme.ca, "pc-"+string(rune('a'+i)))
		c := w.agent(&cert, i%2 == 0)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				status(t, c, w.url("/api/policy"))
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	url := adminURL(w.gw.AdminAddr()) + "/"
	// Wait until the page has rendered a non-zero request total, the
	// connector row and a plot with samples (one every 2 s).
	text := admintest.Render(t, browser, url, "#tenants",
		`document.querySelector("#requests-total") && !/^\s*0\s*$/.test(document.querySelector("#requests-total").textContent)`+
			` && document.body.innerText.includes("conn-acme")`+
			` && !document.body.innerText.includes("no samples yet")`, // the plot has points
		"e2e-status-live")
	for _, want := range []string{"conn-acme", "acme", "ready"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q:\n%s", want, text)
		}
	}
}
