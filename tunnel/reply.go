package tunnel

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is the connector's answer to a stream header.
type Status uint8

// Statuses. Only StatusOK lets bytes flow; every other status is followed
// by the stream's close.
const (
	StatusOK             Status = 0
	StatusBadHeader      Status = 1 // garbled, oversize or unsupported header
	StatusUnknownService Status = 2 // no such service for this tenant
	StatusForbidden      Status = 3 // the device may not use the service
	StatusUnavailable    Status = 4 // the service could not be reached
	StatusOverBudget     Status = 5 // a relay budget is spent: retry later
	StatusInternal       Status = 6
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusBadHeader:
		return "bad_header"
	case StatusUnknownService:
		return "unknown_service"
	case StatusForbidden:
		return "forbidden"
	case StatusUnavailable:
		return "unavailable"
	case StatusOverBudget:
		return "over_budget"
	case StatusInternal:
		return "internal"
	default:
		return fmt.Sprintf("status(%d)", uint8(s))
	}
}

// Reply is the connector's answer to a stream header, sent before any
// other byte.
type Reply struct {
	Status  Status
	Message string // for logs; at most 255 bytes are sent
	// RetryAfter is a hint for StatusOverBudget and StatusUnavailable,
	// sent in whole seconds.
	RetryAfter time.Duration
}

const (
	tagMessage    = 1
	tagRetryAfter = 2
	maxReplyLen   = 512
)

// AppendBinary appends the encoded reply to b.
//
//	version:u8  length:u16  status:u8  field*
func (r *Reply) AppendBinary(b []byte) []byte {
	start := len(b)
	b = append(b, HeaderVersion, 0, 0, byte(r.Status))
	// The peer refuses a message that is not UTF-8: replace bad bytes and
	// never cut a rune in two.
	msg := strings.ToValidUTF8(r.Message, "\uFFFD")
	if len(msg) > 255 {
		n := 255
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	b, _ = appendField(b, tagMessage, []byte(msg))
	if r.RetryAfter > 0 {
		secs := uint32(min(r.RetryAfter.Round(time.Second)/time.Second, 1<<31))
		b = append(b, tagRetryAfter, 4)
		b = binary.BigEndian.AppendUint32(b, max(secs, 1))
	}
	binary.BigEndian.PutUint16(b[start+1:], uint16(len(b)-start-3))
	return b
}

// ReadReply reads one reply from r, reading nothing past it.
func ReadReply(r io.Reader) (*Reply, error) {
	body, err := readFrame(r, maxReplyLen)
	if err != nil {
		return nil, err
	}
	if len(body) < 1 {
		return nil, fmt.Errorf("%w: reply without status", ErrHeaderInvalid)
	}
	rep := &Reply{Status: Status(body[0])}
	err = walkFields(body[1:], func(tag byte, val []byte) error {
		switch tag {
		case tagMessage:
			return setText(&rep.Message, "message", val)
		case tagRetryAfter:
			if len(val) != 4 {
				return fmt.Errorf("%w: retry-after of %d bytes", ErrHeaderInvalid, len(val))
			}
			rep.RetryAfter = time.Duration(binary.BigEndian.Uint32(val)) * time.Second
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// WriteReply writes rep to w in one write.
func WriteReply(w io.Writer, rep *Reply) error {
	_, err := w.Write(rep.AppendBinary(make([]byte, 0, 64)))
	return err
}
