package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve runs an admin server on 127.0.0.1:0 until the test ends, and
// returns its base URL.
func serve(t *testing.T, opts Options) string {
	t.Helper()
	if opts.Config.Listen == "" {
		opts.Config.Listen = "127.0.0.1:0"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context()) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + s.Addr().String()
}

// do sends a request without keeping the connection, and returns the
// response with its body read.
func do(t *testing.T, method, url, auth string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	return do(t, http.MethodGet, url, "")
}

// wantStatus checks the code of resp, showing the body when it is wrong.
func wantStatus(t *testing.T, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Errorf("%s %s: status %d, want %d; body %q", resp.Request.Method, resp.Request.URL.Path,
			resp.StatusCode, code, strings.TrimSpace(body))
	}
}
