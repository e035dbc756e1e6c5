package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sekisho/sekisho/auth"
)

// StatusError is a gateway's answer other than the one asked for: 403 for
// a service the device may not use, 404 for an unknown one, 429 or 503
// with Retry-After when the gateway or the tenant's connector is busy or
// away.
type StatusError struct {
	Code int
	// RetryAfter is the Retry-After the gateway sent; 0 when none.
	RetryAfter time.Duration
	// Message is the start of the answer's text, for logs.
	Message string
}

// Error describes the answer.
func (e *StatusError) Error() string {
	s := "gateway answered " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		s += " (retry after " + e.RetryAfter.String() + ")"
	}
	return s
}

// DialConnect opens a tunnel to a tenant's service through a gateway: an
// HTTP/1.1 CONNECT service:0 on a fresh TLS connection with the device
// certificate. A *StatusError reports a refusal.
func (c *Client) DialConnect(ctx context.Context, service string) (net.Conn, error) {
	if err := auth.ValidService(service); err != nil {
		return nil, err
	}
	conn, _, err := c.dial(ctx, alpnHTTP1)
	if err != nil {
		return nil, err
	}
	tunnel, err := c.connect(ctx, conn, service)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect %s: %w", service, err)
	}
	return tunnel, nil
}

// connect asks for service on conn and reads the answer, within the dial
// timeout and ctx.
func (c *Client) connect(ctx context.Context, conn net.Conn, service string) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(time.Now().Add(c.dialer.timeout))
	target := service + ":0"
	if _, err := io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		return nil, contextErr(ctx, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, contextErr(ctx, fmt.Errorf("read answer: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, time.Now())
	}
	if !stop() {
		return nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	return withBuffered(conn, br), nil
}

// contextErr prefers ctx's error to err when ctx has ended.
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// statusError reads the start of a refusal's text into a *StatusError.
func statusError(resp *http.Response, now time.Time) *StatusError {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	return &StatusError{
		Code:       resp.StatusCode,
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now),
		Message:    firstLine(string(msg)),
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// bufferedConn yields the bytes its reader buffered before reading on.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

// withBuffered returns conn, or, when br holds bytes read past the
// answer, a conn that yields those first.
func withBuffered(conn net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return conn
	}
	head, _ := br.Peek(n)
	return &bufferedConn{Conn: conn, r: io.MultiReader(strings.NewReader(string(head)), conn)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite passes a half-close on to the underlying connection.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
