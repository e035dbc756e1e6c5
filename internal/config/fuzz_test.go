package config

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// everything has a field of every kind the decoder supports.
type everything struct {
	common `yaml:",inline"`
	S      string               `yaml:"s"`
	B      bool                 `yaml:"b"`
	I      int                  `yaml:"i"`
	I8     int8                 `yaml:"i8"`
	I16    int16                `yaml:"i16"`
	I32    int32                `yaml:"i32"`
	I64    int64                `yaml:"i64"`
	U      uint                 `yaml:"u"`
	U8     uint8                `yaml:"u8"`
	U16    uint16               `yaml:"u16"`
	U32    uint32               `yaml:"u32"`
	U64    uint64               `yaml:"u64"`
	F32    float32              `yaml:"f32"`
	F64    float64              `yaml:"f64"`
	D      time.Duration        `yaml:"d"`
	Size   int32                `yaml:"size" config:"bytes"`
	USize  uint64               `yaml:"usize" config:"bytes"`
	Prefix netip.Prefix         `yaml:"prefix"`
	Pins   []pin                `yaml:"pins"`
	List   []limits             `yaml:"list"`
	Map    map[string]*route    `yaml:"map"`
	Nested map[string][]float64 `yaml:"nested"`
	Ptr    *time.Duration       `yaml:"ptr"`
	Next   *everything          `yaml:"next"`
}

// Validate reports a problem at a path derived from the decoded values, so
// the fuzzer also exercises placing validation errors.
func (e *everything) Validate() error {
	if e.S == "" {
		return nil
	}
	return errors.Join(Fieldf(e.S, "s"), Prefix(e.LogLevel, Fieldf("[0]", "x")))
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		"",
		"# comment only\n",
		"s: a\nb: true\ni: -1\ni8: 127\nu8: 255\nf32: 1.5\nd: 10s\nsize: 16MiB\nusize: 1GiB\n",
		"prefix: 10.0.0.0/8\npins: [deadbeef]\nlist: [{idle_timeout: 1s, max_body: 64KB}]\n",
		"map: {a: {backend: x, weight: 1}, \"b.c\": ~}\nnested: {x: [1, .inf, 0x10]}\nptr: 1m\n",
		"next: &n\n  next: *n\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nlist: *b\n",
		"s: tenants[1].name\nlog_level: t[0]\n",
		"s: '[\"x'\n",
		"<<: {s: a}\n",
		"s: a\ns: b\n",
		"s: a\n---\ns: b\n",
		"? [a]\n: b\n",
		"i8: 300\nu: -1\nsize: 1.5GiB\nd: 10\nb: yes\n",
		"- a\n",
		"s: !!binary aGVsbG8=\ni: !!int x\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v everything
		err := Decode(file, data, &v)
		if err == nil {
			return
		}
		checkDecodeError(t, err)
	})
}

// checkDecodeError checks the shape of an error returned by Decode.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	var problems []*Error
	switch e := err.(type) {
	case *Error:
		problems = []*Error{e}
	case Errors:
		if len(e) < 2 {
			t.Fatalf("Errors with %d problems", len(e))
		}
		problems = e
	default:
		t.Fatalf("Decode returned %T: %v", err, err)
	}
	for i, p := range problems {
		if p.File != file || p.Err == nil || p.Line < 0 {
			t.Fatalf("malformed problem %#v", p)
		}
		if i > 0 && p.Line > 0 && sortLine(problems[i-1].Line) > p.Line {
			t.Fatalf("problems not sorted: %v", err)
		}
	}
	if err.Error() == "" {
		t.Fatal("empty error text")
	}
}
