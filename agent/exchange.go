package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// The enrollment endpoint (docs/ENROLLMENT.md).
const (
	pathEnroll = "/v1/enroll"
	pathRenew  = "/v1/renew"

	maxRequestBody  = 16 << 10
	maxAnswerBody   = 64 << 10 // the protocol says 16 KiB; be lenient in what we read
	exchangeTimeout = 30 * time.Second
	// maxWait caps the waits a gateway asks for (Retry-After,
	// poll_after_seconds).
	maxWait = time.Hour

	statusIssued  = "issued"
	statusPending = "pending"
)

// ErrRefused is the enrollment endpoint's generic refusal (403): a bad or
// used-up token, a revoked device, a certificate past the grace period, a
// CSR whose key does not match... The reason is in the connector's audit
// log only.
var ErrRefused = errors.New("refused by the tenant's connector (bad or used-up token, revoked device, certificate past the grace period, ...; the reason is in the connector's audit log)")

// enrollRequest is the body of POST /v1/enroll and /v1/renew.
type enrollRequest struct {
	Token    string `json:"token,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	// Tenant comes with polls: the gateway routes a poll, which carries
	// neither token nor certificate, to the tenant's connector by it.
	// docs/ENROLLMENT.md does not list it yet.
	Tenant   string `json:"tenant,omitempty"`
	CSR      string `json:"csr"`
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os,omitempty"`
}

// answer is the body of a 200 or 202 answer. Its not_after is not read:
// the certificate says it.
type answer struct {
	Status      string `json:"status"`
	DeviceID    string `json:"device_id"`
	Certificate string `json:"certificate"`
	// RenewAfter is RFC 3339; an unreadable one is ignored (it is advice).
	RenewAfter       string       `json:"renew_after"`
	CatalogKeys      []CatalogKey `json:"catalog_keys"`
	PollAfterSeconds int          `json:"poll_after_seconds"`
}

// renewAfter returns the connector's renew_after, zero when absent or
// unreadable.
func (a *answer) renewAfter() time.Time {
	t, err := time.Parse(time.RFC3339, a.RenewAfter)
	if err != nil {
		return time.Time{}
	}
	return t
}

// exchanger posts requests to the gateways' enrollment endpoint, one
// connection per request.
type exchanger struct {
	dialer *dialer
	// cert, when set, is presented as the TLS client certificate (renewal).
	cert  func() *tls.Certificate
	clock clock
}

// unreachableError means no gateway could be reached: nothing was sent.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return "no gateway reachable: " + e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// post sends req to path and returns the answer: an *answer for 200 and
// 202, ErrRefused for 403, a *StatusError for other statuses.
func (x *exchanger) post(ctx context.Context, path string, req *enrollRequest) (*answer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if len(body) > maxRequestBody {
		return nil, fmt.Errorf("request of %d bytes exceeds %d", len(body), maxRequestBody)
	}
	conn, gw, err := x.dialer.dial(ctx, dialOptions{protos: []string{ALPNEnroll}, cert: x.cert})
	if err != nil {
		return nil, &unreachableError{err}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	code, hdr, data, err := roundTrip(conn, gw, path, body)
	if err != nil {
		return nil, contextErr(ctx, fmt.Errorf("%s %s: %w", gw.address, path, err))
	}
	return x.decode(code, hdr, data)
}

// roundTrip writes one HTTP/1.1 request on conn and reads the answer.
func roundTrip(conn net.Conn, gw *gateway, path string, body []byte) (int, http.Header, []byte, error) {
	_, port, _ := net.SplitHostPort(gw.address)
	req, err := http.NewRequest(http.MethodPost, "https://"+net.JoinHostPort(gw.host, port)+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sekisho-agent")
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, nil, nil, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer: %w", err)
	}
	if len(data) > maxAnswerBody {
		return 0, nil, nil, fmt.Errorf("answer exceeds %d bytes", maxAnswerBody)
	}
	return resp.StatusCode, resp.Header, data, nil
}

func (x *exchanger) decode(code int, hdr http.Header, data []byte) (*answer, error) {
	want := map[int]string{http.StatusOK: statusIssued, http.StatusAccepted: statusPending}[code]
	switch {
	case code == http.StatusForbidden:
		return nil, ErrRefused
	case want == "":
		return nil, &StatusError{Code: code, RetryAfter: retryAfter(hdr.Get("Retry-After"), x.clock.now()),
			Message: firstLine(string(data[:min(len(data), 512)]))}
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("malformed %d answer: %w", code, err)
	}
	if a.Status != want {
		return nil, fmt.Errorf("malformed %d answer: status %q, want %q", code, a.Status, want)
	}
	return &a, nil
}

// retryDelay says whether a failed request is worth repeating, and when:
// 429 and 503 after their Retry-After (or a backoff); network failures
// after a backoff when the request is idempotent (a poll, a renewal). A
// first enrollment request that reached no gateway is not repeated: the
// operator is told at once.
func retryDelay(err error, bo *backoff, idempotent bool) (time.Duration, bool) {
	var se *StatusError
	switch {
	case errors.As(err, &se) && (se.Code == http.StatusTooManyRequests || se.Code == http.StatusServiceUnavailable):
		if se.RetryAfter > 0 {
			return min(se.RetryAfter, maxWait), true
		}
		return bo.next(), true
	case errors.Is(err, ErrRefused), se != nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 0, false
	case idempotent:
		return bo.next(), true
	}
	return 0, false
}

// newCSR makes a PKCS #10 request signed by key. Its names are ignored by
// the connector, which writes the certificate's names itself.
func newCSR(key crypto.Signer, commonName string) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName},
	}, key)
	if err != nil {
		return "", fmt.Errorf("create CSR: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// acceptIssued checks an "issued" answer against our key and returns the
// identity it makes: the certificate must be for our key, name a device,
// agree with the answer's device id, serve client authentication, and
// not be expired.
func acceptIssued(a *answer, key crypto.Signer, now time.Time) (*Identity, error) {
	chain, err := certs.ParseCerts([]byte(a.Certificate))
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	leaf := chain[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, errors.New("issued certificate is not for this PC's key")
	}
	p, err := auth.PrincipalOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if a.DeviceID != "" && a.DeviceID != p.DeviceID {
		return nil, fmt.Errorf("issued certificate names device %q, answer says %q", p.DeviceID, a.DeviceID)
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, errors.New("issued certificate is not valid for client authentication")
	}
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("issued certificate expired at %s: check this PC's clock", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := checkCatalogKeys(a.CatalogKeys); err != nil {
		return nil, err
	}
	return &Identity{Key: key, Chain: chain, Principal: p, CatalogKeys: a.CatalogKeys}, nil
}
