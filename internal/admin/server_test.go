package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestProbes(t *testing.T) {
	notReady := errors.New("no snapshot for tenant acme")
	tests := []struct {
		name  string
		ready func() error
		path  string
		code  int
		body  string
	}{
		{"healthz", nil, "/healthz", http.StatusOK, "ok\n"},
		{"healthz when not ready", func() error { return notReady }, "/healthz", http.StatusOK, "ok\n"},
		{"readyz without a check", nil, "/readyz", http.StatusOK, "ready\n"},
		{"readyz ready", func() error { return nil }, "/readyz", http.StatusOK, "ready\n"},
		{"readyz not ready", func() error { return notReady }, "/readyz", http.StatusServiceUnavailable,
			"not ready: no snapshot for tenant acme\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := serve(t, Options{Ready: tt.ready})
			resp, body := get(t, base+tt.path)
			wantStatus(t, resp, body, tt.code)
			if body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

func TestStatusAPI(t *testing.T) {
	fixture := gatewayFixture(time.Date(2026, 5, 14, 12, 0, 0, 0, time.UTC))
	base := serve(t, Options{Status: func() any { return fixture }})
	resp, body := get(t, base+"/api/status")
	wantStatus(t, resp, body, http.StatusOK)
	for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	var got Status
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	if !reflect.DeepEqual(got, fixture) {
		t.Errorf("decoded status differs from the fixture\n got %+v\nwant %+v", got, fixture)
	}
	// The page relies on these names.
	for _, key := range []string{`"role"`, `"tenants"`, `"connectors"`, `"series"`, `"requests_per_second"`,
		`"relayed_bytes_per_second"`, `"expires_in_seconds"`, `"remote_addr"`, `"p99_ms"`} {
		if !strings.Contains(body, key) {
			t.Errorf("status JSON has no key %s", key)
		}
	}
}

func TestStatusAPIWithoutStatus(t *testing.T) {
	base := serve(t, Options{})
	resp, body := get(t, base+"/api/status")
	wantStatus(t, resp, body, http.StatusNotFound)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sekisho_test_requests_total", Help: "Requests."})
	reg.MustRegister(c)
	c.Add(3)
	t.Run("gatherer", func(t *testing.T) {
		base := serve(t, Options{Gatherer: reg})
		resp, body := get(t, base+"/metrics")
		wantStatus(t, resp, body, http.StatusOK)
		if !strings.Contains(body, "\nsekisho_test_requests_total 3\n") {
			t.Errorf("metrics lack the counter:\n%s", body)
		}
	})
	t.Run("no gatherer", func(t *testing.T) {
		base := serve(t, Options{})
		resp, body := get(t, base+"/metrics")
		wantStatus(t, resp, body, http.StatusNotFound)
	})
}

// writeToken writes a token file and returns its name.
func writeToken(t *testing.T, content string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestActions(t *testing.T) {
	const token = "0123456789abcdef-secret"
	var calls atomic.Int64
	actions := map[string]Action{
		"reload": func(context.Context, []byte) (any, error) {
			calls.Add(1)
			return map[string]any{"reloaded": true, "version": 3}, nil
		},
		"fail": func(context.Context, []byte) (any, error) {
			calls.Add(1)
			return nil, errors.New("bad config: line 3")
		},
	}
	withToken := serve(t, Options{Config: Config{TokenFile: writeToken(t, "  "+token+"\n")}, Actions: actions})
	noToken := serve(t, Options{Actions: actions})
	right := "Bearer " + token
	tests := []struct {
		name, base, action, auth string
		code                     int
		want                     map[string]any // the JSON body, when the action ran
	}{
		{"no token configured", noToken, "reload", right, http.StatusForbidden, nil},
		{"no token configured, none sent", noToken, "reload", "", http.StatusForbidden, nil},
		{"missing token", withToken, "reload", "", http.StatusForbidden, nil},
		{"wrong token", withToken, "reload", "Bearer 0123456789abcdef-secreT", http.StatusForbidden, nil},
		{"token prefix", withToken, "reload", "Bearer 0123456789abcdef", http.StatusForbidden, nil},
		{"not a bearer", withToken, "reload", "Basic " + token, http.StatusForbidden, nil},
		{"right token", withToken, "reload", right, http.StatusOK, map[string]any{"reloaded": true, "version": 3.0}},
		{"action error", withToken, "fail", right, http.StatusUnprocessableEntity, map[string]any{"error": "bad config: line 3"}},
		{"unknown action", withToken, "nope", right, http.StatusNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			resp, body := do(t, http.MethodPost, tt.base+"/api/"+tt.action, tt.auth)
			wantStatus(t, resp, body, tt.code)
			ran := calls.Load() != before
			if ran != (tt.want != nil) {
				t.Errorf("action ran: %v, want %v", ran, tt.want != nil)
			}
			if tt.code == http.StatusForbidden && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("403 without WWW-Authenticate")
			}
			if tt.want == nil {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("body %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewTokenFile(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" means no file
		wantErr string
		is      error
	}{
		{"16 characters", "0123456789abcdef", "", nil},
		{"trimmed", "\t0123456789abcdef\n\n", "", nil},
		{"too short", "0123456789abcde", "shorter than 16", nil},
		{"short once trimmed", "   0123456789abc  \n", "shorter than 16", nil},
		{"empty", "\n", "shorter than 16", nil},
		{"missing", "", "admin.token_file", fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "missing")
			if tt.content != "" {
				name = writeToken(t, tt.content)
			}
			_, err := New(Options{Config: Config{Listen: "127.0.0.1:0", TokenFile: name}})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New: %v, want an error with %q", err, tt.wantErr)
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Fatalf("New: %v, want errors.Is %v", err, tt.is)
			}
			if err != nil && strings.Contains(err.Error(), "0123456789") {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
}

func TestPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[on], func(t *testing.T) {
			base := serve(t, Options{Config: Config{Pprof: on}})
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
				resp, body := get(t, base+path)
				wantStatus(t, resp, body, want)
			}
		})
	}
}
