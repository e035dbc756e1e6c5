package admin

import (
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"testing"
)

const wantCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'"

func TestUIHeaders(t *testing.T) {
	base := serve(t, Options{})
	tests := []struct{ path, contentType string }{
		{"/", "text/html"},
		{"/app.js", "text/javascript"},
		{"/plot.js", "text/javascript"},
		{"/format.js", "text/javascript"},
		{"/style.css", "text/css"},
		{"/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, base+tt.path)
			wantStatus(t, resp, body, http.StatusOK)
			for k, v := range map[string]string{
				"Content-Security-Policy": wantCSP,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
			} {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			// nosniff makes the browser refuse a script or a style sheet
			// served with another type.
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
		})
	}
}

// Inline code and styles would break the CSP, HTML built from strings
// would let status data inject markup, and remote URLs would not load on
// a management network. The browser tests catch some of it; this catches
// it in files the fixtures do not reach.
var uiForbidden = map[string][]*regexp.Regexp{
	".html": {
		regexp.MustCompile(`(?i)<script(\s+[^>]*)?>\s*[^<\s]`),                         // a script with a body
		regexp.MustCompile(`(?i)<script(?:\s+(?:type|defer|async)(?:="[^"]*")?)*\s*>`), // a script without src
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
		regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`),
	},
	".js": {
		regexp.MustCompile(`\.(inner|outer)HTML\b`),
		regexp.MustCompile(`insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*'on`),
		regexp.MustCompile(`\.style\.|setAttribute\(\s*'style'`),
		regexp.MustCompile(`https?://`),
		regexp.MustCompile(`\bfetch\(\s*['"` + "`" + `]//`),
	},
	".css": {
		regexp.MustCompile(`@import|url\(\s*['"]?(https?:)?//`),
		regexp.MustCompile(`@font-face`),
	},
}

// svgNS is the one URL the page may name: it is an identifier, not fetched.
const svgNS = "http://www.w3.org/2000/svg"

func TestUIStaysWithinCSP(t *testing.T) {
	n := 0
	err := fs.WalkDir(uiFiles, "ui", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(uiFiles, name)
		if err != nil {
			return err
		}
		b = []byte(strings.ReplaceAll(string(b), svgNS, "svg-namespace"))
		for _, re := range uiForbidden[path.Ext(name)] {
			if loc := re.FindIndex(b); loc != nil {
				line := 1 + strings.Count(string(b[:loc[0]]), "\n")
				t.Errorf("%s:%d: %q matches %s", name, line, b[loc[0]:loc[1]], re)
			}
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("only %d files in ui/", n)
	}
}
