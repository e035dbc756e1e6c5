package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Protocol versions spoken on the control stream. A connector offers the
// range it speaks in its hello; the gateway picks the newest both speak, so
// gateways and connectors can be upgraded one at a time.
const (
	MinProtocolVersion = 1
	MaxProtocolVersion = 1
)

// MsgType tags a control message.
type MsgType uint8

// Control message types.
const (
	MsgHello       MsgType = 1 // connector -> gateway, first message
	MsgWelcome     MsgType = 2 // gateway -> connector: session accepted
	MsgRefuse      MsgType = 3 // gateway -> connector: session refused, then close
	MsgSnapshot    MsgType = 4 // connector -> gateway: the tenant's pushed state
	MsgSnapshotAck MsgType = 5 // gateway -> connector: snapshot taken or refused
	// MsgDrain tells the gateway that the connector is replacing this
	// session (auto transport moving back to QUIC): open no new streams on
	// it and let its idle streams go; the connector closes it once its
	// streams are done.
	MsgDrain MsgType = 6
)

// Size limits of control messages, in bytes.
const (
	MaxHelloLen    = 4 << 10
	MaxSnapshotLen = 16 << 20
)

// ErrMessageTooLarge is returned for a control message over the limit.
var ErrMessageTooLarge = errors.New("control message too large")

// Hello opens the control stream.
type Hello struct {
	MinVersion  int    `json:"min_version"`
	MaxVersion  int    `json:"max_version"`
	Tenant      string `json:"tenant"`
	ConnectorID string `json:"connector_id"`
	Software    string `json:"software,omitempty"`
}

// Welcome accepts a session at the negotiated version.
type Welcome struct {
	Version   int    `json:"version"`
	GatewayID string `json:"gateway_id,omitempty"`
}

// Refuse rejects a session. Reason is a stable word for logs.
type Refuse struct {
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Snapshot is a tenant's whole pushed state. A gateway replaces its copy
// atomically with the newest snapshot of the current epoch.
type Snapshot struct {
	Tenant string `json:"tenant"`
	// Epoch names the registry the snapshot comes from; a new epoch (a
	// registry restored or replaced) replaces the old state whatever its
	// version.
	Epoch   string `json:"epoch"`
	Version uint64 `json:"version"`
	// TrustBundle holds the DER certificates of the tenant's agent CAs.
	TrustBundle [][]byte  `json:"trust_bundle"`
	Services    []Service `json:"services"`
	// Revocations lists revoked agent certificates that are not yet past
	// their expiry plus the renewal grace period. The gateway refuses them
	// at the handshake and closes their live connections.
	Revocations []Revocation `json:"revocations,omitempty"`
	// Catalog is the tenant's payload catalog (payload.Catalog), signed
	// entry by entry on the LAN side; absent: none.
	Catalog json.RawMessage `json:"catalog,omitempty"`
}

// Revocation is one revoked agent certificate. Device ids are never
// reused, so the gateway refuses every certificate of a revoked device,
// also ones issued before its last renewal.
type Revocation struct {
	// Serial is the certificate's serial number in lowercase hex.
	Serial   string    `json:"serial"`
	DeviceID string    `json:"device_id,omitempty"`
	NotAfter time.Time `json:"not_after"`
}

// Service is a tenant's service as the gateway needs to know it. The
// address the connector dials stays on the LAN side.
type Service struct {
	Name string `json:"name"`
	// Routing of agent HTTP requests: by Host, by path prefix, or both
	// (both must match). At least one is set.
	Host       string `json:"host,omitempty"`
	PathPrefix string `json:"path_prefix,omitempty"`
	// HostRewrite, when set, replaces the Host header toward the service.
	HostRewrite string `json:"host_rewrite,omitempty"`
	// Connect marks a raw TCP service, reached by HTTP CONNECT naming the
	// service (never a host:port); Host and PathPrefix do not apply.
	Connect bool `json:"connect,omitempty"`
}

// SnapshotAck tells the connector what the gateway did with a snapshot.
type SnapshotAck struct {
	Epoch    string `json:"epoch"`
	Version  uint64 `json:"version"`
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
}

// NegotiateVersion picks the newest protocol version in both ranges.
func NegotiateVersion(h *Hello) (int, error) {
	lo, hi := max(h.MinVersion, MinProtocolVersion), min(h.MaxVersion, MaxProtocolVersion)
	if h.MinVersion > h.MaxVersion || lo > hi {
		return 0, fmt.Errorf("no common protocol version: peer speaks %d..%d, this end %d..%d",
			h.MinVersion, h.MaxVersion, MinProtocolVersion, MaxProtocolVersion)
	}
	return hi, nil
}

// WriteMessage writes one control message:
//
//	type:u8  length:u32  JSON body
func WriteMessage(w io.Writer, t MsgType, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode control message %d: %w", t, err)
	}
	if len(body) > MaxSnapshotLen {
		return fmt.Errorf("%w: %d bytes", ErrMessageTooLarge, len(body))
	}
	buf := make([]byte, 5, 5+len(body))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}

// ReadMessage reads one control message of at most limit body bytes.
func ReadMessage(r io.Reader, limit int) (MsgType, []byte, error) {
	var pre [5]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(pre[1:])
	if int64(n) > int64(limit) {
		return 0, nil, fmt.Errorf("%w: type %d of %d bytes, max %d", ErrMessageTooLarge, pre[0], n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("read control message body: %w", noEOF(err))
	}
	return MsgType(pre[0]), body, nil
}

// Decode parses a control message body into v. Unknown JSON fields are
// ignored so that newer peers may add them.
func Decode(t MsgType, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode control message %d: %w", t, err)
	}
	return nil
}

// Control is the control stream of a session. Sends are serialised and
// bounded by a write timeout; Receive must be called from one goroutine.
type Control struct {
	s       Stream
	timeout time.Duration
	mu      sync.Mutex
}

// NewControl wraps a control stream; every send must complete within
// timeout.
func NewControl(s Stream, timeout time.Duration) *Control {
	return &Control{s: s, timeout: timeout}
}

// Send writes one message. If it fails once part of the message is
// written, the stream is closed: the peer gets an error, not a wait for
// the rest.
func (c *Control) Send(t MsgType, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.SetWriteDeadline(time.Now().Add(c.timeout))
	defer c.s.SetWriteDeadline(time.Time{})
	w := &chunkWriter{w: c.s}
	if err := WriteMessage(w, t, v); err != nil {
		if w.n > 0 {
			c.s.Close()
		}
		return fmt.Errorf("send control message %d: %w", t, err)
	}
	return nil
}

// controlChunk is the most chunkWriter writes at a time.
const controlChunk = 64 << 10

// chunkWriter writes at most controlChunk bytes at a time. yamux sends one
// write as one frame of up to the stream window, and each frame must be
// on the wire within Config.WriteTimeout: a snapshot written whole would
// fail on a slow but healthy link, and hold keepalive pings behind it.
type chunkWriter struct {
	w io.Writer
	n int64
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	var n int
	for n < len(p) {
		m, err := c.w.Write(p[n:min(len(p), n+controlChunk)])
		n += m
		c.n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Receive reads one message of at most limit bytes. A zero deadline waits
// for ever (the session's keepalive still ends a dead peer).
func (c *Control) Receive(limit int, deadline time.Time) (MsgType, []byte, error) {
	c.s.SetReadDeadline(deadline)
	return ReadMessage(c.s, limit)
}

// Close closes the control stream.
func (c *Control) Close() error { return c.s.Close() }
