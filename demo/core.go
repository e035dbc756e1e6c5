package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// core is a toy management server: agents fetch their policy, upload
// inventory and download patch payloads.
type core struct {
	payloadSize int64
	requests    atomic.Int64
}

func (c *core) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/policy", c.policy)
	mux.HandleFunc("POST /api/inventory", c.inventory)
	mux.HandleFunc("GET /patches/{name}", c.patch)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		mux.ServeHTTP(w, r)
	})
}

// policy answers what the device should do, addressed by the identity the
// gateway vouched for.
func (c *core) policy(w http.ResponseWriter, r *http.Request) {
	device := r.Header.Get("Sekisho-Device-Id")
	if device == "" {
		http.Error(w, "no device identity", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"device":         device,
		"tenant":         r.Header.Get("Sekisho-Tenant"),
		"check_interval": "15m",
		"patches":        []string{"/patches/KB5031356.msu"},
		"issued":         time.Now().UTC().Format(time.RFC3339),
	})
}

// inventory accepts a device's hardware and software list.
func (c *core) inventory(w http.ResponseWriter, r *http.Request) {
	var inv map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&inv); err != nil {
		http.Error(w, "bad inventory: "+err.Error(), http.StatusBadRequest)
		return
	}
	if inv["device"] != r.Header.Get("Sekisho-Device-Id") {
		http.Error(w, "inventory names another device", http.StatusForbidden)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// patch serves a deterministic payload of the configured size, so agents
// can check what arrived.
func (c *core) patch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !strings.HasSuffix(name, ".msu") && !strings.HasSuffix(name, ".cab") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(c.payloadSize, 10))
	io.Copy(w, io.LimitReader(PayloadReader(), c.payloadSize))
}

// PayloadReader returns the endless deterministic byte pattern that patch
// payloads are cut from.
func PayloadReader() io.Reader { return &pattern{} }

type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.off*7 + p.off>>8)
		p.off++
	}
	return len(b), nil
}

func (c *core) String() string { return fmt.Sprintf("core(%d requests)", c.requests.Load()) }

// ServeCore runs the toy core alone on addr until ctx ends: a stand-in
// management server for trying the roles as separate processes.
func ServeCore(ctx context.Context, addr string, payloadSize int64) error {
	c := &core{payloadSize: payloadSize}
	srv := &http.Server{Addr: addr, Handler: c.handler(), ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
