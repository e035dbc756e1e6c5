package admintest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultChromium is where Debian and Ubuntu install Chromium.
const DefaultChromium = "/usr/bin/chromium"

// closeTimeout bounds the graceful close of the browser at the end of a test.
const closeTimeout = 10 * time.Second

// Browser finds Chromium ($CHROMIUM, else DefaultChromium), starts it
// headless with a fresh profile, and returns its chromedp context: Render
// and chromedp.Run work in its first tab, and chromedp.NewContext of it
// opens another tab of the same browser. When no Chromium is found the test
// skips, unless $CI is true, where it fails. The browser is closed, and
// waited for, when the test ends.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path, err := findChromium()
	if err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("admintest: %v", err)
		}
		t.Skipf("admintest: %v", err)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), options(path, t.TempDir())...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, closeTimeout)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("admintest: close browser: %v", err)
		}
		cancel()
		acancel() // waits for the process and its files
	})
	// Start the browser now, so that a broken install fails here and not
	// in the middle of a test's first action.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("admintest: start %s: %v", path, err)
	}
	return ctx
}

// options are the flags of a browser on a machine without network beyond
// loopback, possibly running as root, with its profile in dataDir.
func options(path, dataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dataDir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
	}
}

// findChromium returns $CHROMIUM when set, else DefaultChromium, if the
// file exists.
func findChromium() (string, error) {
	path, from := os.Getenv("CHROMIUM"), "$CHROMIUM"
	if path == "" {
		path, from = DefaultChromium, "default path"
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("no Chromium at %s (%s); install chromium or set $CHROMIUM: %w", path, from, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("chromium %s (%s) is not an executable file", path, from)
	}
	return path, nil
}
