package admintest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// WatchConsole records, from now on, what a page of the tab ctx reports as
// broken: uncaught exceptions and unhandled rejections, console.error and
// console.assert calls, and browser log errors (a resource that fails to
// load, a Content-Security-Policy violation). It returns a func that lists
// them so far. Call it before Render.
func WatchConsole(t testing.TB, ctx context.Context) func() []string {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []string
	)
	err := chromedp.Listen(ctx, func(ev any) {
		if msg := problem(ev); msg != "" {
			mu.Lock()
			seen = append(seen, msg)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("admintest: listen to the console: %v", err)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// problem describes ev when it reports something broken, or returns "".
func problem(ev any) string {
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		if d == nil {
			return "exception"
		}
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		return fmt.Sprintf("exception at %s:%d:%d: %s", d.URL, d.LineNumber+1, d.ColumnNumber+1, text)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return ""
		}
		var args []string
		for _, a := range ev.Args {
			switch {
			case a.Description != "":
				args = append(args, a.Description)
			case len(a.Value) > 0:
				args = append(args, string(a.Value))
			}
		}
		return fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *log.EventEntryAdded:
		e := ev.Entry
		if e == nil || e.Level != log.EntryLevelError {
			return ""
		}
		return fmt.Sprintf("log %s error: %s (%s)", e.Source, e.Text, e.URL)
	}
	return ""
}
