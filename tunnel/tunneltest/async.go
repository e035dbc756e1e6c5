package tunneltest

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// Result is what a goroutine of a test reports back to the test goroutine.
type Result[T any] struct {
	V   T
	Err error
}

// Async runs f in a goroutine and returns a channel with its outcome. The
// test must receive from the channel (see Await) before it ends.
func Async[T any](f func() (T, error)) <-chan Result[T] {
	ch := make(chan Result[T], 1)
	go func() {
		v, err := f()
		ch <- Result[T]{v, err}
	}()
	return ch
}

// Await receives the outcome of an Async call, failing the test if
// there is none after a generous bound (it guards against hangs only).
func Await[T any](tb testing.TB, ch <-chan Result[T], what string) (T, error) {
	tb.Helper()
	select {
	case r := <-ch:
		return r.V, r.Err
	case <-time.After(hang):
		tb.Fatalf("%s: no result after %v", what, hang)
		panic("unreachable")
	}
}

// RandomStream is n reproducible pseudo-random bytes.
func RandomStream(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// SendSum writes src to w, half-closes w and returns the digest of what
// it sent.
func SendSum(w interface {
	io.Writer
	CloseWrite() error
}, src io.Reader) ([32]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(w, io.TeeReader(src, h)); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), w.CloseWrite()
}

// RecvSum reads r to EOF and returns the digest and the count.
func RecvSum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return [32]byte(h.Sum(nil)), n, err
}
