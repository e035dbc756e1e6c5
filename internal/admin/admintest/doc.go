// Package admintest renders a role's admin status page in headless
// Chromium for tests, through chromedp: it finds and starts the browser,
// loads a page, waits until it has rendered, and keeps a full-page
// screenshot as a test artifact for a human to look at.
//
// Chromium is /usr/bin/chromium or the file named by $CHROMIUM. Without
// it the browser tests skip, except when $CI is true, where they fail.
// Screenshots go to $SEKISHO_ARTIFACTS, or to artifacts/ at the module
// root. As a test helper it reads these variables; library packages do not.
package admintest
