package admin

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sekisho/sekisho/internal/admin/admintest"
)

// The browser tests load the status page in headless Chromium, from a real
// admin server, and read what it shows. Screenshots go to artifacts/.

// page is what the tests read off a rendered page.
type page struct {
	State         string   `json:"state"`
	Role          string   `json:"role"`
	Tenant        string   `json:"tenant"`
	Ready         string   `json:"ready"`
	ReadyClass    string   `json:"readyClass"`
	Banner        string   `json:"banner"`
	RequestsTotal string   `json:"requestsTotal"`
	RequestsRate  string   `json:"requestsRate"`
	AgentsTotal   string   `json:"agentsTotal"`
	Connectors    []string `json:"connectors"`
	Tenants       []row    `json:"tenants"`
	Gateways      []row    `json:"gateways"`
	Services      []row    `json:"services"`
	Certs         []row    `json:"certs"`
	Events        []row    `json:"events"`
	PlotLines     int      `json:"plotLines"`
	PlotDots      int      `json:"plotDots"`
	PlotText      string   `json:"plotText"`
	Injected      int      `json:"injected"`
	Hidden        []string `json:"hidden"` // ids of hidden elements and of what is in them
}

// row is a table row: its class and the text of its cells.
type row struct {
	Class string   `json:"class"`
	Cells []string `json:"cells"`
}

const readPage = `(() => {
  const q = (sel) => document.querySelector(sel);
  const text = (sel) => q(sel)?.textContent ?? '';
  const rows = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')]
    .map((r) => ({ class: r.className, cells: [...r.cells].map((c) => c.textContent) }));
  return {
    state: document.body.dataset.state,
    role: text('#role'), tenant: text('#tenant'),
    ready: text('#ready'), readyClass: q('#ready').className,
    banner: q('#error').hidden ? '' : text('#error'),
    requestsTotal: text('#requests-total'), requestsRate: text('#requests-rate'),
    agentsTotal: text('#agents-total'),
    connectors: [...document.querySelectorAll('#tenants .connector')].map((e) => e.textContent),
    tenants: rows('tenants'), gateways: rows('gateways'), services: rows('services'),
    certs: rows('certs'), events: rows('events'),
    plotLines: [...document.querySelectorAll('#plot path.line')].filter((p) => p.getTotalLength() > 0).length,
    plotDots: document.querySelectorAll('#plot circle').length,
    plotText: q('#plot').textContent,
    injected: document.querySelectorAll('main img, main [onerror]').length,
    hidden: [...document.querySelectorAll('[hidden][id], [hidden] [id]')].map((e) => e.id),
  };
})()`

// read returns what the page in tab shows now.
func read(t *testing.T, tab context.Context) page {
	t.Helper()
	p, err := chromedp.Run(tab, chromedp.Evaluate[page](readPage))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return p
}

// rowWith returns the row of rows whose cell i is text.
func rowWith(t *testing.T, rows []row, i int, text string) row {
	t.Helper()
	for _, r := range rows {
		if len(r.Cells) > i && r.Cells[i] == text {
			return r
		}
	}
	t.Fatalf("no row with %q in column %d: %+v", text, i, rows)
	return row{}
}

// noProblems fails the test if the page reported errors.
func noProblems(t *testing.T, problems func() []string) {
	t.Helper()
	for _, p := range problems() {
		t.Errorf("page reported: %s", p)
	}
}

// hasClass reports whether the space-separated class list has c.
func hasClass(list, c string) bool { return slices.Contains(strings.Fields(list), c) }

// statusServer serves *st, which the test may swap.
func statusServer(t *testing.T, st *atomic.Pointer[Status], ready func() error) string {
	t.Helper()
	return serve(t, Options{Status: func() any { return st.Load() }, Ready: ready})
}

func TestStatusPageRenders(t *testing.T) {
	var st atomic.Pointer[Status]
	fixture := gatewayFixture(time.Now())
	st.Store(&fixture)
	base := statusServer(t, &st, func() error { return nil })
	tab := admintest.Browser(t)
	problems := admintest.WatchConsole(t, tab)
	// Two renders: the second replaces what the first drew.
	text := admintest.Render(t, tab, base+"/", "#role",
		`document.body.dataset.state === "ok" && Number(document.body.dataset.renders) >= 2`, "status-gateway")
	p := read(t, tab)

	if p.Role != "gateway" {
		t.Errorf("#role %q, want gateway", p.Role)
	}
	if p.Ready != "ready" || !hasClass(p.ReadyClass, "ok") {
		t.Errorf("#ready %q (class %q), want ready (ok)", p.Ready, p.ReadyClass)
	}
	if !strings.Contains(text, "conn-acme") {
		t.Errorf("page does not show conn-acme:\n%s", text)
	}
	if want := []string{"conn-acme (quic) ×2"}; !slices.Equal(p.Connectors, want) {
		t.Errorf("connectors %q, want %q", p.Connectors, want)
	}
	if p.RequestsTotal != "1234" {
		t.Errorf("#requests-total %q, want 1234", p.RequestsTotal)
	}
	if p.RequestsRate == "" || p.RequestsRate == "–" {
		t.Errorf("#requests-rate %q, want the last point's rate", p.RequestsRate)
	}
	if p.AgentsTotal != "5" {
		t.Errorf("#agents-total %q, want 5", p.AgentsTotal)
	}
	if p.PlotLines != 4 {
		t.Errorf("plot has %d drawn lines, want 4 (requests, errors, relayed, redirected)", p.PlotLines)
	}
	if r := rowWith(t, p.Tenants, 0, "acme"); r.Class != "" {
		t.Errorf("served tenant acme with sessions has class %q", r.Class)
	}
	if r := rowWith(t, p.Tenants, 0, "globex"); !hasClass(r.Class, "crit") {
		t.Errorf("unserved tenant globex has class %q, want crit", r.Class)
	}
	for subject, want := range map[string]string{
		"CN=gateway.example.test": "crit", // 2 days
		"CN=acme connectors CA":   "warn", // 10 days
		"CN=acme agents CA":       "",
	} {
		if r := rowWith(t, p.Certs, 2, subject); r.Class != want {
			t.Errorf("certificate %s: class %q, want %q", subject, r.Class, want)
		}
	}
	if len(p.Certs) != 4 || p.Certs[0].Cells[2] != "CN=gateway.example.test" {
		t.Errorf("certificates not soonest expiry first: %+v", p.Certs)
	}
	if len(p.Events) != 3 || !strings.HasPrefix(p.Events[0].Cells[2], "agent certificate revoked <img") {
		t.Errorf("events not newest first, or markup not shown as text: %+v", p.Events)
	}
	if p.Injected != 0 {
		t.Errorf("status data became %d elements", p.Injected)
	}
	for _, id := range []string{"gateways", "services"} {
		if !slices.Contains(p.Hidden, id) {
			t.Errorf("connector table #%s shown on a gateway (hidden: %q)", id, p.Hidden)
		}
	}
	if slices.Contains(p.Hidden, "tenants") {
		t.Error("#tenants hidden on a gateway")
	}
	noProblems(t, problems)
}

func TestStatusPageRendersConnector(t *testing.T) {
	var st atomic.Pointer[Status]
	fixture := connectorFixture(time.Now())
	st.Store(&fixture)
	base := statusServer(t, &st, nil)
	tab := admintest.Browser(t)
	problems := admintest.WatchConsole(t, tab)
	admintest.Render(t, tab, base+"/", "#role", `document.body.dataset.state === "ok"`, "status-connector")
	p := read(t, tab)

	if p.Role != "connector" || p.Tenant != "acme" {
		t.Errorf("#role %q, #tenant %q, want connector, acme", p.Role, p.Tenant)
	}
	if want := "not ready: gateway gw2.example.test:443: no session"; p.Ready != want || !hasClass(p.ReadyClass, "bad") {
		t.Errorf("#ready %q (class %q), want %q (bad)", p.Ready, p.ReadyClass, want)
	}
	if r := rowWith(t, p.Gateways, 0, "gw1.example.test:443"); r.Class != "" || r.Cells[1] != "2/2" || r.Cells[2] != "quic" {
		t.Errorf("gateway up: %+v", r)
	}
	if r := rowWith(t, p.Gateways, 0, "gw2.example.test:443"); !hasClass(r.Class, "crit") || r.Cells[1] != "0/2" ||
		r.Cells[4] != "dial tcp 192.0.2.10:443: i/o timeout" {
		t.Errorf("gateway down: %+v, want class crit, 0/2 and its last error", r)
	}
	if r := rowWith(t, p.Services, 0, "intranet"); !slices.Equal(r.Cells, []string{"intranet", "10.0.0.5:443", "3", "812", "2"}) {
		t.Errorf("service intranet: %q", r.Cells)
	}
	if r := rowWith(t, p.Certs, 2, "CN=conn-acme"); r.Class != "warn" {
		t.Errorf("certificate expiring in 9 days: class %q, want warn", r.Class)
	}
	if p.RequestsTotal != "857" || p.PlotLines != 4 {
		t.Errorf("requests %q, plot lines %d; want 857, 4", p.RequestsTotal, p.PlotLines)
	}
	if !slices.Contains(p.Hidden, "tenants") || !slices.Contains(p.Hidden, "agents-total") {
		t.Errorf("gateway parts shown on a connector (hidden: %q)", p.Hidden)
	}
	noProblems(t, problems)
}

// TestStatusPageSparseSeries renders a role that has just started: no
// point yet, then one.
func TestStatusPageSparseSeries(t *testing.T) {
	var st atomic.Pointer[Status]
	now := time.Now()
	base := statusServer(t, &st, nil)
	tab := admintest.Browser(t)
	problems := admintest.WatchConsole(t, tab)
	tests := []struct {
		name        string
		points      int
		lines, dots int
		text        string
	}{
		{"no point", 0, 0, 0, "no samples yet"},
		{"one point", 1, 0, 4, ""},
		{"two points", 2, 4, 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fixture := gatewayFixture(now)
			fixture.Series = series(now, 10*time.Second, tt.points)
			st.Store(&fixture)
			admintest.Render(t, tab, base+"/", "#role", `document.body.dataset.state === "ok"`, "status-"+strings.ReplaceAll(tt.name, " ", "-"))
			p := read(t, tab)
			if p.PlotLines != tt.lines || p.PlotDots != tt.dots || !strings.Contains(p.PlotText, tt.text) {
				t.Errorf("plot: %d lines, %d dots, text %q; want %d, %d, %q", p.PlotLines, p.PlotDots, p.PlotText, tt.lines, tt.dots, tt.text)
			}
			if tt.points == 0 && p.RequestsRate != "–" {
				t.Errorf("#requests-rate %q without points, want –", p.RequestsRate)
			}
		})
	}
	noProblems(t, problems)
}

// TestStatusPageKeepsStaleData: when /api/status fails, the page keeps the
// last data, marks it stale and says why.
func TestStatusPageKeepsStaleData(t *testing.T) {
	fixture := gatewayFixture(time.Now())
	var failing atomic.Bool
	base := serve(t, Options{Status: func() any {
		if failing.Load() {
			panic(http.ErrAbortHandler) // the connection drops, as when the role hangs or dies
		}
		return fixture
	}})
	tab := admintest.Browser(t)
	admintest.Render(t, tab, base+"/", "#role", `document.body.dataset.state === "ok"`, "status-before-stale")
	failing.Store(true)
	err := chromedp.Do(tab, chromedp.Poll[chromedp.Void](`document.body.dataset.state === "stale"`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(admintest.RenderTimeout)))
	if err != nil {
		t.Fatalf("page never turned stale: %v", err)
	}
	admintest.Capture(t, tab, "status-stale")
	p := read(t, tab)
	if !strings.Contains(p.Banner, "stale") {
		t.Errorf("banner %q, want it to say the data is stale", p.Banner)
	}
	if p.Role != "gateway" || p.RequestsTotal != "1234" || len(p.Connectors) != 1 {
		t.Errorf("last data gone: role %q, requests %q, connectors %q", p.Role, p.RequestsTotal, p.Connectors)
	}
}
