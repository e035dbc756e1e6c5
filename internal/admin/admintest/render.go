package admintest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// RenderTimeout bounds the wait for a page to render.
const RenderTimeout = 15 * time.Second

// Render loads url in the tab ctx (from Browser, or chromedp.NewContext of
// it), waits until the CSS selector ready is visible and the JavaScript
// expression cond is true, then returns document.body.innerText and saves a
// full-page screenshot to ArtifactPath(t, name). A page that does not get
// there within RenderTimeout fails the test, with a screenshot of how far
// it got.
func Render(t testing.TB, ctx context.Context, url, ready, cond, name string) (text string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, RenderTimeout+5*time.Second)
	defer cancel()
	err := chromedp.Do(wctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(ready)),
		chromedp.Poll[chromedp.Void](cond,
			chromedp.WithPollingInterval(50*time.Millisecond),
			chromedp.WithPollingTimeout(RenderTimeout)),
	)
	if err != nil {
		got := Capture(t, ctx, name+"-failed")
		t.Fatalf("admintest: render %s (ready %q, cond %q): %v\npage text:\n%s", url, ready, cond, err, got)
	}
	return Capture(t, ctx, name)
}

// Capture returns document.body.innerText of the tab ctx as it is now, and
// saves a full-page screenshot to ArtifactPath(t, name).
func Capture(t testing.TB, ctx context.Context, name string) (text string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, RenderTimeout)
	defer cancel()
	text, err := chromedp.Run(cctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		t.Errorf("admintest: read page text: %v", err)
	}
	png, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("admintest: screenshot %s: %v", name, err)
		return text
	}
	path := ArtifactPath(t, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("admintest: save screenshot: %v", err)
		return text
	}
	t.Logf("screenshot: %s", path)
	return text
}

// ArtifactPath returns the path of the PNG artifact name: in
// $SEKISHO_ARTIFACTS if set, else in artifacts/ at the module root. It
// creates the directory. Characters other than letters, digits, '.', '-'
// and '_' in name become '_', so t.Name() of a subtest is a good name.
func ArtifactPath(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("SEKISHO_ARTIFACTS")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("admintest: %v", err)
		}
		dir = filepath.Join(root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("admintest: artifacts directory: %v", err)
	}
	return filepath.Join(dir, safeName(name)+".png")
}

func safeName(name string) string {
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	if strings.Trim(name, ".") == "" {
		return "page"
	}
	return name
}

// moduleRoot walks up from the working directory (a test's package
// directory) to the directory of go.mod.
func moduleRoot() (string, error) {
	start, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := start; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s: %w", start, os.ErrNotExist)
		}
		dir = parent
	}
}
