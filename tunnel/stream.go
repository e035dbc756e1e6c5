package tunnel

import (
	"context"
	"fmt"
	"time"
)

// StatusError is a connector's refusal of a stream.
type StatusError struct{ Reply Reply }

func (e *StatusError) Error() string {
	if e.Reply.Message == "" {
		return "stream refused: " + e.Reply.Status.String()
	}
	return fmt.Sprintf("stream refused: %s: %s", e.Reply.Status, e.Reply.Message)
}

// OpenRelay opens a stream, sends h and waits up to timeout for the
// connector's reply. On StatusOK the stream is ready for bytes; any other
// status closes it and returns a *StatusError.
func OpenRelay(ctx context.Context, s Session, h *Header, timeout time.Duration) (Stream, error) {
	buf, err := h.AppendBinary(make([]byte, 0, 128))
	if err != nil {
		return nil, err
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.SetDeadline(deadline)
	// A canceled request stops waiting for the reply at once.
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := st.Write(buf); err != nil {
		st.Close()
		return nil, fmt.Errorf("send stream header: %w", err)
	}
	rep, err := ReadReply(st)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("read stream reply: %w", err)
	}
	if rep.Status != StatusOK {
		st.Close()
		return nil, &StatusError{Reply: *rep}
	}
	if !stop() {
		st.Close()
		return nil, ctx.Err()
	}
	st.SetDeadline(time.Time{})
	return st, nil
}

// ReadRequest reads the header of a stream the peer opened, within
// timeout. On error, it has already answered StatusBadHeader and closed
// the stream.
func ReadRequest(st Stream, timeout time.Duration) (*Header, error) {
	st.SetReadDeadline(time.Now().Add(timeout))
	h, err := ReadHeader(st)
	if err != nil {
		Answer(st, &Reply{Status: StatusBadHeader, Message: err.Error()}, timeout)
		st.Close()
		return nil, err
	}
	st.SetReadDeadline(time.Time{})
	return h, nil
}

// Answer writes rep within timeout.
func Answer(st Stream, rep *Reply, timeout time.Duration) error {
	st.SetWriteDeadline(time.Now().Add(timeout))
	err := WriteReply(st, rep)
	st.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("send stream reply: %w", err)
	}
	return nil
}
