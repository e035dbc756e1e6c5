package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sekisho loadgen against sekisho demo, each its own process, as the
// README shows: over TCP and over HTTP/3, with payload downloads that the
// demo's gateway redirects to its CDN, which the agents fetch without
// their certificate.
func TestLoadgenAgainstDemo(t *testing.T) {
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	demo := exec.Command(bin, "demo", "--no-agents", "--duration", "2m", "--pki-out", pki)
	demo.Stdout = io.Discard
	stderr, err := demo.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		demo.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			demo.Process.Kill()
			<-exited
		}
	})
	// The demo prints its addresses, then keeps writing until it ends.
	addrs := make(chan map[string]string, 1)
	go func() {
		defer close(exited)
		found := map[string]string{}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			for _, prefix := range []string{"status page: ", "gateway: ", "gateway HTTP/3: "} {
				if rest, ok := strings.CutPrefix(line, prefix); ok {
					found[prefix], _, _ = strings.Cut(rest, " ")
				}
			}
			if len(found) == 3 {
				addrs <- found
				found = map[string]string{}
			}
		}
		io.Copy(io.Discard, stderr)
		demo.Wait()
	}()
	var found map[string]string
	select {
	case found = <-addrs:
	case <-exited:
		t.Fatal("the demo ended before it printed its addresses")
	case <-time.After(30 * time.Second):
		t.Fatal("the demo printed no addresses in 30 s")
	}

	for _, tt := range []struct{ transport, target string }{
		{"tcp", found["gateway: "]}, {"quic", found["gateway HTTP/3: "]},
	} {
		out, errOut, code := run(t, dir, "loadgen", "--transport", tt.transport, "--target", tt.target,
			"--server-name", "localhost", "--ca-dir", pki, "--gateway-ca", filepath.Join(pki, "gateway-ca.pem"),
			"--agents", "8", "--rate", "40", "--duration", "2s", "--payload-fraction", "0.25", "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d:\n%s%s", tt.transport, code, out, errOut)
		}
		var sum struct {
			Connected     int64            `json:"connected"`
			ConnectFailed int64            `json:"connect_failed"`
			Requests      int64            `json:"requests"`
			Failed        int64            `json:"requests_failed"`
			Payloads      int64            `json:"payload_downloads"`
			Errors        map[string]int64 `json:"errors_by_kind"`
			FirstErrors   []string         `json:"first_errors"`
		}
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("%s: stdout is not one JSON object: %v\n%s", tt.transport, err, out)
		}
		if sum.Connected != 8 || sum.ConnectFailed != 0 || sum.Requests == 0 || sum.Failed != 0 || sum.Payloads == 0 {
			t.Errorf("%s: connected %d (failed %d), requests %d (failed %d), payload downloads %d; errors %v %v",
				tt.transport, sum.Connected, sum.ConnectFailed, sum.Requests, sum.Failed, sum.Payloads, sum.Errors, sum.FirstErrors)
		}
	}
	if n := metricSum(t, found["status page: "]+"metrics", "sekisho_gateway_payload_redirects_total"); n == 0 {
		t.Error("the gateway redirected no payload to the CDN")
	}
}

// metricSum adds up every series of a metric on a Prometheus endpoint.
func metricSum(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			sum += v
		}
	}
	return sum
}
