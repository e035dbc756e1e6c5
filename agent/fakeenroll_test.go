package agent

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// fakeRequest is the enrollment request as the connector reads it.
type fakeRequest struct {
	Token    string `json:"token"`
	DeviceID string `json:"device_id"`
	Tenant   string `json:"tenant"`
	CSR      string `json:"csr"`
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
}

// readRequest reads and checks an enrollment request; nil after a 400.
func (g *fakeGateway) readRequest(w http.ResponseWriter, r *http.Request) (*fakeRequest, *x509.CertificateRequest) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	var req fakeRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	var csr *x509.CertificateRequest
	if err == nil {
		csr, err = parseCSR(req.CSR)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, nil
	}
	g.mu.Lock()
	g.bodies = append(g.bodies, body)
	g.mu.Unlock()
	return &req, csr
}

func parseCSR(text string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("no CSR")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	return csr, csr.CheckSignature()
}

func (g *fakeGateway) enroll(w http.ResponseWriter, r *http.Request) {
	req, csr := g.readRequest(w, r)
	if req == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unavailable > 0 {
		g.unavailable--
		w.Header().Set("Retry-After", "9")
		http.Error(w, "tenant's connector unavailable", http.StatusServiceUnavailable)
		return
	}
	switch {
	case req.Token != "" && (g.refuse || req.Token != g.token):
		refuse(w)
	case req.Token != "":
		g.nextID++
		id := fmt.Sprintf("d-%04d", g.nextID)
		if g.pendingPolls == 0 {
			g.issue(w, id, csr.PublicKey)
			return
		}
		g.pending[id] = csr.PublicKey
		writeJSON(w, http.StatusAccepted, map[string]any{"status": "pending", "device_id": id, "poll_after_seconds": 7})
	default:
		g.poll(w, req.DeviceID, csr.PublicKey)
	}
}

// poll answers a poll while approval is pending: issued after
// pendingPolls answers in all, for the key of the first request only.
func (g *fakeGateway) poll(w http.ResponseWriter, id string, pub crypto.PublicKey) {
	key, ok := g.pending[id]
	if !ok || !publicKeysEqual(key, pub) {
		refuse(w)
		return
	}
	g.polls[id]++
	if g.polls[id] < g.pendingPolls {
		writeJSON(w, http.StatusAccepted, map[string]any{"status": "pending", "device_id": id, "poll_after_seconds": 7})
		return
	}
	delete(g.pending, id)
	g.issue(w, id, pub)
}

func (g *fakeGateway) renew(w http.ResponseWriter, r *http.Request) {
	_, csr := g.readRequest(w, r)
	if csr == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.renewFailures > 0 {
		g.renewFailures--
		http.Error(w, "connector hiccup", http.StatusInternalServerError)
		return
	}
	chain := r.TLS.PeerCertificates
	if len(chain) == 0 || time.Now().After(chain[0].NotAfter.Add(g.grace)) {
		refuse(w)
		return
	}
	// Within the grace period, check the chain as of its last valid moment.
	at := time.Now()
	if last := chain[0].NotAfter.Add(-time.Second); at.After(last) {
		at = last
	}
	p, err := auth.VerifyAgent(chain, testTenant, g.roots, at)
	if err != nil || !publicKeysEqual(chain[0].PublicKey, csr.PublicKey) {
		refuse(w)
		return
	}
	g.renewedFrom = append(g.renewedFrom, chain[0].SerialNumber)
	g.issue(w, p.DeviceID, csr.PublicKey)
}

func refuse(w http.ResponseWriter) {
	writeJSON(w, http.StatusForbidden, map[string]any{"status": "refused"})
}

func (g *fakeGateway) issue(w http.ResponseWriter, id string, pub crypto.PublicKey) {
	now := time.Now()
	leaf, err := g.ca.IssueAgent(certs.AgentRequest{DeviceID: id, PublicKey: pub, Now: now, Lifetime: g.lifetime})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	g.issued = append(g.issued, leaf)
	writeJSON(w, http.StatusOK, map[string]any{
		"status":       "issued",
		"device_id":    id,
		"certificate":  string(certs.EncodeCert(leaf.Raw)) + string(certs.EncodeCert(g.ca.Cert.Raw)),
		"not_after":    leaf.NotAfter,
		"renew_after":  now.Add(2 * g.lifetime / 3),
		"catalog_keys": []map[string]any{{"id": "k1", "public_key": []byte(g.catalog)}},
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
