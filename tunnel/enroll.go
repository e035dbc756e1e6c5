package tunnel

// Enrollment travels on a stream of kind KindEnroll (service "enroll"):
// after the header and the connector's StatusOK, the gateway writes one
// MsgEnrollRequest and the connector answers with one MsgEnrollAnswer,
// both framed like control messages (type:u8 length:u32 JSON). The
// agent-facing protocol is in docs/ENROLLMENT.md.
const (
	MsgEnrollRequest MsgType = 16
	MsgEnrollAnswer  MsgType = 17
)

// EnrollService is the service name of enrollment streams.
const EnrollService = "enroll"

// MaxEnrollLen bounds enrollment messages, in bytes.
const MaxEnrollLen = 64 << 10

// Enrollment operations.
const (
	OpEnroll = "enroll" // first enrollment, with a token
	OpPoll   = "poll"   // waiting for approval: device id and the same key
	OpRenew  = "renew"  // renewal with the current (or expired) certificate
)

// EnrollRequest is what the gateway forwards of an agent's request.
type EnrollRequest struct {
	Op       string `json:"op"`
	Token    string `json:"token,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	CSR      string `json:"csr"` // PEM
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os,omitempty"`
	// CertChain is the certificate the agent presented in TLS (renewal),
	// DER, leaf first.
	CertChain  [][]byte `json:"cert_chain,omitempty"`
	ClientAddr string   `json:"client_addr,omitempty"`
}

// EnrollAnswer is the connector's decision; the gateway sends Body to the
// agent with HTTPStatus.
type EnrollAnswer struct {
	HTTPStatus int        `json:"http_status"`
	Body       EnrollBody `json:"body"`
}

// EnrollBody is the agent-facing answer (docs/ENROLLMENT.md).
type EnrollBody struct {
	Status           string       `json:"status"` // issued, pending, refused
	DeviceID         string       `json:"device_id,omitempty"`
	Certificate      string       `json:"certificate,omitempty"` // PEM, leaf first
	NotAfter         string       `json:"not_after,omitempty"`   // RFC 3339
	RenewAfter       string       `json:"renew_after,omitempty"` // RFC 3339
	PollAfterSeconds int          `json:"poll_after_seconds,omitempty"`
	CatalogKeys      []CatalogKey `json:"catalog_keys,omitempty"`
}

// CatalogKey is one of a tenant's catalog signing keys.
type CatalogKey struct {
	ID        string `json:"id"`
	PublicKey []byte `json:"public_key"` // Ed25519, base64 in JSON
}
