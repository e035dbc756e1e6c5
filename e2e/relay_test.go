package e2e

import (
	"io"
	"net/http"
	"testing"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
)

func TestSmoke(t *testing.T) {
	acme := newTenant(t, "acme")
	w := startGateway(t, nil, acme)
	core := startCore(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, "hello "+r.Header.Get("Sekisho-Device-Id"))
	}))
	c := w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}}, nil)
	waitFor(t, "connector sessions", func() bool { return c.c.Sessions() == 2 })
	cert := certstest.Agent(t, acme.ca, "pc-1")
	for _, h2 := range []bool{false, true} {
		resp, err := w.agent(&cert, h2).Get(w.url("/api/policy"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello pc-1" {
			t.Fatalf("h2=%v: got %d %q", h2, resp.StatusCode, b)
		}
		t.Logf("proto %s", resp.Proto)
	}
}
