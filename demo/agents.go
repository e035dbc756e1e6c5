package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/quic-go/quic-go/http3"

	sekagent "github.com/sekisho/sekisho/agent"
	"github.com/sekisho/sekisho/connector"
)

// agent is a simulated remote PC: it fetches its policy, uploads its
// inventory and now and then downloads a patch, checking every byte.
type agent struct {
	id       string
	client   *http.Client
	base     string
	follower *sekagent.PayloadFollower // follows and verifies signed payload redirects
}

// enrollAgents enrolls every agent through the gateway, as real PCs do:
// one token for all, a key made per agent, a certificate from the
// connector's CA.
func (st *stack) enrollAgents(ctx context.Context, opts Options) ([]*agent, error) {
	tok, err := st.conn.CreateToken(ctx, connector.TokenRequest{TTL: time.Hour, Uses: opts.Agents, CreatedBy: "demo"})
	if err != nil {
		return nil, err
	}
	agents := make([]*agent, opts.Agents)
	errs := make([]error, opts.Agents)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range opts.Agents {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			agents[i], errs[i] = st.enrollAgent(ctx, fmt.Sprintf("pc-%04d", i+1), tok.Token, i%2 == 0, opts.AgentTransport)
		})
	}
	wg.Wait()
	return agents, errors.Join(errs...)
}

func (st *stack) enrollAgent(ctx context.Context, host, token string, h2 bool, transport string) (*agent, error) {
	cfg := sekagent.Config{StateDir: filepath.Join(st.dir, host),
		Gateways: []sekagent.GatewayConfig{{Address: st.gwAddr, ServerName: "localhost", RootCAs: st.roots}}}
	if _, err := sekagent.Enroll(ctx, cfg, token, sekagent.EnrollInfo{Hostname: host}); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", host, err)
	}
	id, err := sekagent.LoadIdentity(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return st.newAgent(id, h2, transport), nil
}

// newAgent makes a simulated agent with an enrolled identity: its HTTP
// client follows signed payload redirects with the catalog keys it got
// at enrollment, like the agent's local proxy does.
func (st *stack) newAgent(id *sekagent.Identity, h2 bool, transport string) *agent {
	conf := &tls.Config{
		RootCAs: st.roots, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{id.TLSCertificate()},
	}
	var base http.RoundTripper
	addr := st.gwAddr
	if transport == "quic" {
		tr := &http3.Transport{TLSClientConfig: conf}
		st.keepTransport(h3Closer{tr})
		base, addr = tr, st.h3Addr
	} else {
		if !h2 {
			conf.NextProtos = []string{"http/1.1"}
		}
		tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 4}
		st.keepTransport(tr)
		base = tr
	}
	f := sekagent.NewPayloadFollower(sekagent.PayloadOptions{Tenant: id.Principal.Tenant, Gateway: base,
		Keys: func() []sekagent.CatalogKey { return id.CatalogKeys }})
	return &agent{id: id.Principal.DeviceID, follower: f, base: "https://" + addr,
		client: &http.Client{Transport: f.Transport(base), Timeout: 30 * time.Second}}
}

// keepTransport remembers a transport so that close can drop its
// connections; agents enroll in parallel, so it locks.
func (st *stack) keepTransport(t interface{ CloseIdleConnections() }) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.transport = append(st.transport, t)
}

// h3Closer closes an HTTP/3 transport's connections with the demo.
type h3Closer struct{ tr *http3.Transport }

func (h h3Closer) CloseIdleConnections() { h.tr.Close() }

// run works until ctx ends: policy and inventory every round, the
// catalogued patch every tenth round, the relayed one every twentieth.
func (a *agent) run(ctx context.Context, interval time.Duration, s *stats) {
	for round := 0; ctx.Err() == nil; round++ {
		s.observe("policy", a.policy)
		s.observe("inventory", a.inventory)
		switch round % 20 {
		case 5:
			s.observe("patch", func() (int64, error) { return a.patch(catalogPatch) })
		case 15:
			s.observe("relayed", func() (int64, error) { return a.patch(relayedPatch) })
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

func (a *agent) policy() (int64, error) {
	resp, err := a.client.Get(a.base + "/api/policy")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var p struct {
		Device string `json:"device"`
	}
	n, err := decode(resp, &p)
	if err == nil && p.Device != a.id {
		err = fmt.Errorf("policy addressed to %q, not %q", p.Device, a.id)
	}
	return n, err
}

func (a *agent) inventory() (int64, error) {
	body, _ := json.Marshal(map[string]any{
		"device": a.id, "os": "Windows 11 23H2", "cpu": "x86_64", "ram_gib": 16,
		"software": []string{"office-2021", "edge-119", "7zip-23.01"},
	})
	resp, err := a.client.Post(a.base+"/api/inventory", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return int64(len(body)), fmt.Errorf("inventory: status %d", resp.StatusCode)
	}
	return int64(len(body)), nil
}

// patch downloads a patch and checks every byte. A 503 with Retry-After
// (the relay budget is spent) is a deferral: a real agent comes back
// after the wait, and so does this one, in a later round.
func (a *agent) patch(path string) (int64, error) {
	resp, err := a.client.Get(a.base + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
		io.Copy(io.Discard, resp.Body)
		return 0, errDeferred
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("patch: status %d", resp.StatusCode)
	}
	n, err := compareReaders(resp.Body, PayloadReader())
	if err == nil && n != resp.ContentLength {
		err = fmt.Errorf("patch: got %d bytes, want %d", n, resp.ContentLength)
	}
	return n, err
}

func decode(resp *http.Response, v any) (int64, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return int64(len(b)), err
	}
	if resp.StatusCode != http.StatusOK {
		return int64(len(b)), fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return int64(len(b)), json.Unmarshal(b, v)
}

var (
	errCorrupt  = errors.New("payload differs from what the core sent")
	errDeferred = errors.New("deferred: 503 with Retry-After")
)

// compareReaders reads got to its end and checks it against want.
func compareReaders(got, want io.Reader) (int64, error) {
	buf, ref := make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	for {
		k, err := got.Read(buf)
		if k > 0 {
			io.ReadFull(want, ref[:k])
			if !bytes.Equal(buf[:k], ref[:k]) {
				return n, errCorrupt
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
