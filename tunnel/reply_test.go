package tunnel_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sekisho/sekisho/tunnel"
)

var allStatuses = []tunnel.Status{
	tunnel.StatusOK, tunnel.StatusBadHeader, tunnel.StatusUnknownService, tunnel.StatusForbidden,
	tunnel.StatusUnavailable, tunnel.StatusOverBudget, tunnel.StatusInternal, 99,
}

func TestReplyRoundTrip(t *testing.T) {
	for _, st := range allStatuses {
		for _, v := range []struct {
			name  string
			msg   string
			retry time.Duration
		}{
			{"bare", "", 0},
			{"message", "no route to core", 0},
			{"retry", "", 30 * time.Second},
			{"both", "budget spent", 90 * time.Second},
			{"longest message", strings.Repeat("m", 255), time.Second},
			{"unicode", "予算超過", 5 * time.Second},
		} {
			t.Run(fmt.Sprintf("%v/%s", st, v.name), func(t *testing.T) {
				rep := &tunnel.Reply{Status: st, Message: v.msg, RetryAfter: v.retry}
				var buf bytes.Buffer
				if err := tunnel.WriteReply(&buf, rep); err != nil {
					t.Fatal(err)
				}
				got, err := tunnel.ReadReply(&buf)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !reflect.DeepEqual(got, rep) {
					t.Errorf("got %+v, want %+v", got, rep)
				}
			})
		}
	}
}

func TestReplyLayout(t *testing.T) {
	tests := []struct {
		name string
		rep  tunnel.Reply
		want string
	}{
		{"ok", tunnel.Reply{}, `01 0001 00`},
		{
			"over budget",
			tunnel.Reply{Status: tunnel.StatusOverBudget, Message: "budget", RetryAfter: 30 * time.Second},
			// version 1, length 15, status 5, message "budget", retry-after 30 s
			`01 000f 05  01 06 627564676574  02 04 0000001e`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.want)
			if got := tt.rep.AppendBinary(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n got %x\nwant %x", got, want)
			}
			got, err := tunnel.ReadReply(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.rep) {
				t.Errorf("decoded %+v, want %+v", *got, tt.rep)
			}
		})
	}
}

func TestReplyRetryAfterRounding(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Nanosecond, time.Second}, // never rounded down to "no hint"
		{499 * time.Millisecond, time.Second},
		{500 * time.Millisecond, time.Second},
		{1499 * time.Millisecond, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{30 * time.Second, 30 * time.Second},
		{time.Hour, time.Hour},
		{200 * 365 * 24 * time.Hour, (1 << 31) * time.Second}, // capped
	}
	for _, tt := range tests {
		t.Run(tt.in.String(), func(t *testing.T) {
			b := (&tunnel.Reply{Status: tunnel.StatusOverBudget, RetryAfter: tt.in}).AppendBinary(nil)
			got, err := tunnel.ReadReply(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if got.RetryAfter != tt.want {
				t.Errorf("RetryAfter %v sent as %v, want %v", tt.in, got.RetryAfter, tt.want)
			}
		})
	}
}

func TestReplyMessageTruncated(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"ascii", strings.Repeat("a", 300), strings.Repeat("a", 255)},
		{"exactly 255", strings.Repeat("b", 255), strings.Repeat("b", 255)},
		// 2-byte runes: byte 255 is in the middle of the 128th rune,
		// which must go whole.
		{"two-byte runes", strings.Repeat("é", 200), strings.Repeat("é", 127)},
		// 3-byte runes: 85 fit exactly.
		{"three-byte runes", strings.Repeat("関", 100), strings.Repeat("関", 85)},
		{"four-byte runes", "x" + strings.Repeat("🚧", 70), "x" + strings.Repeat("🚧", 63)},
		// Invalid UTF-8 is replaced rather than refused by the peer.
		{"invalid UTF-8", "bad \xff byte", "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := (&tunnel.Reply{Status: tunnel.StatusInternal, Message: tt.msg}).AppendBinary(nil)
			got, err := tunnel.ReadReply(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("the peer cannot read the reply: %v", err)
			}
			if got.Message != tt.want {
				t.Errorf("message %q (%d bytes), want %q", got.Message, len(got.Message), tt.want)
			}
			if len(got.Message) > 255 || !utf8.ValidString(got.Message) {
				t.Errorf("message of %d bytes, valid UTF-8 %v", len(got.Message), utf8.ValidString(got.Message))
			}
		})
	}
}

func replyBytes(body ...byte) []byte {
	return append([]byte{tunnel.HeaderVersion, byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestReadReplyErrors(t *testing.T) {
	oversize := append([]byte{1, 0x02, 0x01}, make([]byte, 513)...)
	tests := []struct {
		name string
		in   []byte
		want error
		left int
	}{
		{"empty input", nil, io.EOF, 0},
		{"truncated prefix", []byte{1, 0}, io.ErrUnexpectedEOF, 0},
		{"wrong version", []byte{2, 0, 1, 0}, tunnel.ErrHeaderVersion, 1},
		{"over 512 bytes", oversize, tunnel.ErrHeaderTooLarge, 513},
		{"truncated body", []byte{1, 0, 4, 0, 1, 2}, io.ErrUnexpectedEOF, 0},
		{"no status", replyBytes(), tunnel.ErrHeaderInvalid, 0},
		{"truncated field", replyBytes(0, 1), tunnel.ErrHeaderInvalid, 0},
		{"field overrun", replyBytes(0, 1, 3, 'a'), tunnel.ErrHeaderInvalid, 0},
		{"retry-after of 2 bytes", replyBytes(5, 2, 2, 0, 1), tunnel.ErrHeaderInvalid, 0},
		{"retry-after of 8 bytes", replyBytes(5, 2, 8, 0, 0, 0, 0, 0, 0, 0, 1), tunnel.ErrHeaderInvalid, 0},
		{"message not UTF-8", replyBytes(1, 1, 1, 0xff), tunnel.ErrHeaderInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			rep, err := tunnel.ReadReply(r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %+v, %v; want %v", rep, err, tt.want)
			}
			if r.Len() != tt.left {
				t.Errorf("%d bytes left unread, want %d", r.Len(), tt.left)
			}
		})
	}
}

func TestReadReplySkipsUnknownTagsAndReadsNothingPastIt(t *testing.T) {
	in := replyBytes(byte(tunnel.StatusForbidden),
		7, 2, 'z', 'z', // unknown
		1, 2, 'n', 'o',
		0, 0,
	)
	payload := []byte("next bytes")
	r := bytes.NewReader(append(in, payload...))
	rep, err := tunnel.ReadReply(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&tunnel.Reply{Status: tunnel.StatusForbidden, Message: "no"}); !reflect.DeepEqual(rep, want) {
		t.Errorf("got %+v, want %+v", rep, want)
	}
	rest, _ := io.ReadAll(r)
	if !bytes.Equal(rest, payload) {
		t.Errorf("left %q, want %q", rest, payload)
	}
}

func TestStatusStrings(t *testing.T) {
	want := []string{"ok", "bad_header", "unknown_service", "forbidden", "unavailable", "over_budget", "internal", "status(99)"}
	for i, st := range allStatuses {
		if got := st.String(); got != want[i] {
			t.Errorf("Status(%d) = %q, want %q", uint8(st), got, want[i])
		}
	}
}

func TestStatusError(t *testing.T) {
	tests := []struct {
		rep  tunnel.Reply
		want string
	}{
		{tunnel.Reply{Status: tunnel.StatusForbidden}, "stream refused: forbidden"},
		{tunnel.Reply{Status: tunnel.StatusUnavailable, Message: "dial core: refused"}, "stream refused: unavailable: dial core: refused"},
	}
	for _, tt := range tests {
		if got := (&tunnel.StatusError{Reply: tt.rep}).Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
