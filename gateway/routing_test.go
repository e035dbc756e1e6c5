package gateway

import (
	"strings"
	"testing"

	"github.com/sekisho/sekisho/tunnel"
)

func TestRouteMatch(t *testing.T) {
	routes, err := buildRoutes([]tunnel.Service{
		// Listed least specific first: the order must come from the rules.
		{Name: "root", PathPrefix: "/"},
		{Name: "api", PathPrefix: "/api"},
		{Name: "api-v2", PathPrefix: "/api/v2/"},
		{Name: "apix", PathPrefix: "/apix"},
		{Name: "web", Host: "Web.Example"},
		{Name: "web-api", Host: "web.example", PathPrefix: "/api"},
		{Name: "files", Host: "files.example", PathPrefix: "/pub/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &state{routes: routes}
	tests := []struct {
		host, path string
		want       string // "" for no match
	}{
		{"gw.example", "/", "root"},
		{"gw.example", "/other", "root"},
		{"gw.example", "/api", "api"},
		{"gw.example", "/api/", "api"},
		{"gw.example", "/api/x/y", "api"},
		{"gw.example", "/apix", "apix"},
		{"gw.example", "/apix/1", "apix"},
		{"gw.example", "/apixy", "root"}, // segment-aware: not /apix
		{"gw.example", "/apiary", "root"},
		{"gw.example", "/api/v2", "api"}, // "/api/v2/" matches below it only
		{"gw.example", "/api/v2/", "api-v2"},
		{"gw.example", "/api/v2/x", "api-v2"},
		{"gw.example", "/api/v22", "api"},
		// Host and prefix beat host alone, which beats any prefix.
		{"web.example", "/api/x", "web-api"},
		{"web.example", "/api", "web-api"},
		{"web.example", "/apix", "web"},
		{"web.example", "/", "web"},
		{"web.example", "/api/v2/x", "web-api"},
		// A host route whose prefix does not match falls through to
		// the prefix routes.
		{"files.example", "/pub/a", "files"},
		{"files.example", "/pub", "root"},
		{"files.example", "/api/x", "api"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			got := ""
			if svc := st.match(tt.host, tt.path); svc != nil {
				got = svc.Name
			}
			if got != tt.want {
				t.Errorf("match(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
			}
		})
	}

	t.Run("no catch-all", func(t *testing.T) {
		routes, err := buildRoutes([]tunnel.Service{{Name: "api", PathPrefix: "/api/"}})
		if err != nil {
			t.Fatal(err)
		}
		st := &state{routes: routes}
		for _, p := range []string{"/", "/api", "/apix/"} {
			if svc := st.match("h", p); svc != nil {
				t.Errorf("match(%q) = %q, want none", p, svc.Name)
			}
		}
	})
}

func TestRouteMatchHostFromRequest(t *testing.T) {
	routes, err := buildRoutes([]tunnel.Service{
		{Name: "web", Host: "WEB.example"},
		{Name: "v6", Host: "::1"},
		{Name: "root", PathPrefix: "/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &state{routes: routes}
	tests := []struct {
		reqHost string
		want    string
	}{
		{"web.example", "web"},
		{"WEB.EXAMPLE", "web"},
		{"Web.Example:443", "web"},
		{"web.example:8443", "web"},
		{"web.example.", "web"},
		{"web.example.:443", "web"},
		{"[::1]:443", "v6"},
		{"web.example.org", "root"},
		{"other", "root"},
		{"", "root"},
	}
	for _, tt := range tests {
		t.Run(tt.reqHost, func(t *testing.T) {
			got := ""
			if svc := st.match(hostOnly(tt.reqHost), "/x"); svc != nil {
				got = svc.Name
			}
			if got != tt.want {
				t.Errorf("Host %q (hostOnly %q) routed to %q, want %q", tt.reqHost, hostOnly(tt.reqHost), got, tt.want)
			}
		})
	}
}

func TestBuildRoutesRefusesInvalidServices(t *testing.T) {
	tests := []struct {
		name string
		svcs []tunnel.Service
		want string // in the error
	}{
		{"bad name", []tunnel.Service{{Name: "Core_1", PathPrefix: "/"}}, "Core_1"},
		{"empty name", []tunnel.Service{{PathPrefix: "/"}}, "service name"},
		{"duplicate", []tunnel.Service{{Name: "a", PathPrefix: "/a"}, {Name: "a", Host: "h"}}, "twice"},
		{"neither host nor prefix", []tunnel.Service{{Name: "a", HostRewrite: "x"}}, "neither"},
		{"prefix without leading slash", []tunnel.Service{{Name: "a", PathPrefix: "api"}}, "must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, err := buildRoutes(tt.svcs)
			if err == nil {
				t.Fatalf("buildRoutes accepted %+v: %+v", tt.svcs, routes)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	t.Run("empty list", func(t *testing.T) {
		routes, err := buildRoutes(nil)
		if err != nil || len(routes) != 0 {
			t.Errorf("buildRoutes(nil) = %v, %v; want no routes, no error", routes, err)
		}
	})
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"", true},
		{"/api/x", true},
		{"/api//x", true},
		{"/a.b/..c/...", true},
		{"/.well-known/x", true},
		{"/.", false},
		{"/..", false},
		{"/api/../admin", false},
		{"/api/./x", false},
		{"/api/..", false},
		{"..", false},
		{"/a/b/./", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := cleanPath(tt.path); got != tt.want {
				t.Errorf("cleanPath(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM":      "example.com",
		"example.com:443":  "example.com",
		"example.com.":     "example.com",
		"EXAMPLE.com.:80":  "example.com",
		"127.0.0.1:8443":   "127.0.0.1",
		"[::1]:443":        "::1",
		"":                 "",
		"core.acme.tunnel": "core.acme.tunnel",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRouteServiceHostNormalised: a service Host is compared with the
// request's host after hostOnly (lowercase, port and trailing dot
// stripped), so a service Host must be normalised the same way, or
// refused; never accepted and then unreachable.
func TestRouteServiceHostNormalised(t *testing.T) {
	for _, host := range []string{"web.example.", "Web.Example:443"} {
		t.Run(host, func(t *testing.T) {
			routes, err := buildRoutes([]tunnel.Service{{Name: "web", Host: host}})
			if err != nil {
				return // refused with an error: fine
			}
			st := &state{routes: routes}
			if svc := st.match(hostOnly("web.example"), "/"); svc == nil {
				t.Errorf("service Host %q accepted but a request for web.example does not reach it", host)
			}
		})
	}
}

// TestCleanPathBackendDotSegments: cores commonly resolve dot segments
// that carry a path parameter (Tomcat, Jetty, Spring: "..;x") or a
// backslash (IIS: "..\"), so a path prefix only routes what it seems to
// route if those are refused too.
func TestCleanPathBackendDotSegments(t *testing.T) {
	for _, p := range []string{"/api/..;/admin", "/api/..;jsessionid=1/admin", "/api/.;/x", `/api/..\admin`, `/api/.\x`} {
		if cleanPath(p) {
			t.Errorf("cleanPath(%q) = true, want false", p)
		}
	}
}
