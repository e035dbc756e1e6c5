package payload_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sekisho/sekisho/payload"
)

// source is an in-memory download source.
type source struct {
	data   []byte
	fail   bool // refuse to open
	cutAt  int  // >0: error after this many bytes
	opened int
}

func (s *source) open() (io.ReadCloser, error) {
	s.opened++
	if s.fail {
		return nil, errors.New("503 from source")
	}
	if s.cutAt > 0 {
		return io.NopCloser(io.MultiReader(bytes.NewReader(s.data[:s.cutAt]), errReader{})), nil
	}
	return io.NopCloser(bytes.NewReader(s.data)), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

func corrupt(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x55
	return c
}

// fetch downloads good's digest and size from srcs, reading in small
// pieces, and returns what the reader received and the final error.
func fetch(t *testing.T, good []byte, holdBack int, srcs ...*source) ([]byte, error, []string) {
	t.Helper()
	sum := sha256.Sum256(good)
	names := make([]string, len(srcs))
	byName := map[string]*source{}
	for i, s := range srcs {
		names[i] = fmt.Sprintf("src%d", i)
		byName[names[i]] = s
	}
	var failed []string
	d, err := payload.Fetch(context.Background(), payload.FetchConfig{
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(good)), Sources: names, HoldBack: holdBack,
		Open:      func(_ context.Context, src string) (io.ReadCloser, error) { return byName[src].open() },
		OnFailure: func(src string, _ error) { failed = append(failed, src) },
	})
	if err != nil {
		return nil, err, failed
	}
	defer d.Close()
	var got bytes.Buffer
	buf := make([]byte, 7000)
	for {
		n, err := d.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			return got.Bytes(), nil, failed
		}
		if err != nil {
			return got.Bytes(), err, failed
		}
	}
}

func TestFetch(t *testing.T) {
	const size = 300 << 10
	good := randomBytes(size, 1)
	tests := []struct {
		name     string
		holdBack int
		srcs     []*source
		failed   []string
		complete bool  // the reader got the payload and io.EOF
		want     error // else the error
		maxGot   int   // and at most this many bytes
	}{
		{"first source good", 0, []*source{{data: good}, {data: good}}, nil, true, nil, 0},
		{"first refuses", 0, []*source{{fail: true}, {data: good}}, []string{"src0"}, true, nil, 0},
		{"first corrupt, within hold-back", 0, []*source{{data: corrupt(good, 10)}, {data: good}}, []string{"src0"}, true, nil, 0},
		{"first corrupt in the tail", 64 << 10, []*source{{data: corrupt(good, size-100)}, {data: good}}, []string{"src0"}, true, nil, 0},
		{"first cut mid-way", 64 << 10, []*source{{data: good, cutAt: 200 << 10}, {data: good}}, []string{"src0"}, true, nil, 0},
		{"first short", 0, []*source{{data: good[:size-1]}, {data: good}}, []string{"src0"}, true, nil, 0},
		{"first long", 0, []*source{{data: append(bytes.Clone(good), 0)}, {data: good}}, []string{"src0"}, true, nil, 0},
		{"every source corrupt", 0, []*source{{data: corrupt(good, 5)}, {data: corrupt(good, 6)}}, []string{"src0", "src1"}, false, payload.ErrDigestMismatch, 0},
		{"corrupt early, streamed, next disagrees", 64 << 10, []*source{{data: corrupt(good, 10)}, {data: good}}, []string{"src0", "src1"}, false, payload.ErrPrefixMismatch, size - 64<<10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err, failed := fetch(t, good, tt.holdBack, tt.srcs...)
			if fmt.Sprint(failed) != fmt.Sprint(tt.failed) {
				t.Errorf("failed sources = %v, want %v", failed, tt.failed)
			}
			if tt.complete {
				if err != nil || !bytes.Equal(got, good) {
					t.Fatalf("got %d bytes (equal: %v), err %v; want the payload", len(got), bytes.Equal(got, good), err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, payload.ErrNoSource) {
				t.Fatalf("err = %v, want %v and ErrNoSource", err, tt.want)
			}
			if len(got) >= size || len(got) > tt.maxGot {
				t.Fatalf("reader got %d bytes of an unverified payload (at most %d allowed)", len(got), tt.maxGot)
			}
		})
	}
}

func TestFetchNoSourceAnswers(t *testing.T) {
	good := randomBytes(1000, 2)
	_, err, _ := fetch(t, good, 0, &source{fail: true}, &source{fail: true})
	if !errors.Is(err, payload.ErrNoSource) {
		t.Fatalf("err = %v, want ErrNoSource", err)
	}
}

func BenchmarkFetch(b *testing.B) {
	data := randomBytes(16<<20, 3)
	sum := sha256.Sum256(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		d, err := payload.Fetch(context.Background(), payload.FetchConfig{
			SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Sources: []string{"mem"},
			Open: func(context.Context, string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		})
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, d); err != nil || n != int64(len(data)) {
			b.Fatal(n, err)
		}
	}
}
