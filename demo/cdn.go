package demo

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/payload"
)

// The demo's patches: one in the payload catalog (redirected to the toy
// CDN, verified by the agents), one only under the relay's payload prefix
// (relayed through the tunnel under the connector's budget).
const (
	catalogPatch = "/patches/KB5031356.msu"
	relayedPatch = "/patches/drivers-2026-12.cab"
)

// cdn is a toy vendor CDN on loopback: it serves the payload pattern.
type cdn struct {
	size   int64
	served atomic.Int64
	srv    *http.Server
	url    string
}

func startCDN(size int64) (*cdn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &cdn{size: size, url: "http://" + ln.Addr().String() + "/KB5031356.msu"}
	c.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(c.size, 10))
		n, _ := io.Copy(w, io.LimitReader(PayloadReader(), c.size))
		c.served.Add(n)
	})}
	go c.srv.Serve(ln)
	return c, nil
}

// writeCatalog writes the demo's payload catalog: the catalogued patch,
// from the CDN first and the relay as fallback.
func writeCatalog(dir string, size int64, cdnURL string) (string, error) {
	h := sha256.New()
	io.Copy(h, io.LimitReader(PayloadReader(), size))
	file := filepath.Join(dir, "catalog.yaml")
	body := fmt.Sprintf("payloads:\n  - path: %s\n    sha256: %s\n    size: %d\n    sources: [%s, %s]\n",
		catalogPatch, hex.EncodeToString(h.Sum(nil)), size, cdnURL, payload.Relay)
	return file, os.WriteFile(file, []byte(body), 0o600)
}

// catalogKey makes the demo tenant's catalog signing key.
func catalogKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	return key, err
}
