package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const file = "gw.yaml"

func TestDecodeValues(t *testing.T) {
	sec := 3 * time.Second
	tests := []struct {
		name string
		yaml string
		want gateway
	}{
		{"empty file", "", gateway{}},
		{"only comments", "# nothing here\n\n# yet\n", gateway{}},
		{"empty document marker", "---\n", gateway{}},
		{
			name: "scalars",
			yaml: "name: edge\nport: 0x1F90\ndebug: true\nratio: 1.5\nsmall: -128\ncount: 65_535\nlisten: 127.0.0.1:8080\ntags: [a, \"123\"]\n",
			want: gateway{Name: "edge", Port: 8080, Debug: true, Ratio: 1.5, Small: -128, Count: 65535,
				Listen: netip.MustParseAddrPort("127.0.0.1:8080"), Tags: []string{"a", "123"}},
		},
		{"float from integer", "ratio: 2", gateway{Ratio: 2}},
		{"inline struct", "log_level: debug", gateway{common: common{LogLevel: "debug"}}},
		{
			name: "durations and sizes",
			yaml: "limits:\n  idle_timeout: 1m30s\n  max_body: 16MiB\n  buffer: 64KB\n",
			want: gateway{Limits: limits{IdleTimeout: 90 * time.Second, MaxBody: 16 << 20, Buffer: 64000}},
		},
		{"size plain integer", "limits: {max_body: 1024, buffer: \"2048\"}", gateway{Limits: limits{MaxBody: 1024, Buffer: 2048}}},
		{"size SI", "limits: {max_body: 10MB, buffer: 1 kB}", gateway{Limits: limits{MaxBody: 10e6, Buffer: 1000}}},
		{"size IEC", "limits: {max_body: 1GiB, buffer: 512KiB}", gateway{Limits: limits{MaxBody: 1 << 30, Buffer: 512 << 10}}},
		{
			name: "pointer allocated",
			yaml: "backup:\n  idle_timeout: 5s\ntenants:\n  - name: a\n    timeout: 3s\n",
			want: gateway{Backup: &limits{IdleTimeout: 5 * time.Second}, Tenants: []tenant{{Name: "a", Timeout: &sec}}},
		},
		{
			name: "nulls leave zero values",
			yaml: "name: ~\nport: null\nbackup:\ntenants:\n  - ~\n",
			want: gateway{Tenants: []tenant{{}}},
		},
		{
			name: "map of structs",
			yaml: "routes:\n  web:\n    backend: http://a\n    weight: 2\n  \"a.b\": {backend: x}\nlabels: {env: prod}\n",
			want: gateway{Routes: map[string]route{"web": {"http://a", 2}, "a.b": {Backend: "x"}}, Labels: map[string]string{"env": "prod"}},
		},
		{
			name: "text unmarshalers",
			yaml: "tenants:\n  - name: a\n    allow: [10.0.0.0/8, \"fd00::/8\"]\n    connector_pins: [deadbeef]\n",
			want: gateway{Tenants: []tenant{{
				Name:          "a",
				Allow:         []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
				ConnectorPins: []pin{"deadbeef"},
			}}},
		},
		{
			name: "aliases are followed",
			yaml: "limits: &l {idle_timeout: 10s}\nbackup: *l\n",
			want: gateway{Limits: limits{IdleTimeout: 10 * time.Second}, Backup: &limits{IdleTimeout: 10 * time.Second}},
		},
		// A missing name would fail tenant.Validate; nested validators are
		// not called by the decoder.
		{"nested Validate not called", "tenants: [{}]", gateway{Tenants: []tenant{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got gateway
			if err := Decode(file, []byte(tt.yaml), &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the full error text
	}{
		{"unknown key with hint", "nmae: x", `gw.yaml:1: nmae: unknown key, did you mean "name"?`},
		{"unknown key without hint", "port: 1\nbogus: 1", `gw.yaml:2: bogus: unknown key`},
		{"ignored field is unknown", "ignored: x", `gw.yaml:1: ignored: unknown key`},
		{"unexported field is unknown", "hidden: x", `gw.yaml:1: hidden: unknown key`},
		{"misspelled nested key", "limits:\n  idle_timout: 10s", `gw.yaml:2: limits.idle_timout: unknown key, did you mean "idle_timeout"?`},
		{"misspelled key in map of structs", "routes:\n  web:\n    backnd: x", `gw.yaml:3: routes.web.backnd: unknown key, did you mean "backend"?`},
		{"quoted map key in path", "routes:\n  \"a.b\":\n    bogus: 1", `gw.yaml:3: routes["a.b"].bogus: unknown key`},
		{"string got mapping", "tenants:\n  - name:\n      a: b", `gw.yaml:3: tenants[0].name: want a string, got a mapping`},
		{"string got integer", "name: 123", `gw.yaml:1: name: want a string, got 123`},
		{"string got boolean", "name: true", `gw.yaml:1: name: want a string, got true`},
		{"string got timestamp", "name: 2024-01-02", `gw.yaml:1: name: want a string, got 2024-01-02`},
		{"string list got scalar", "tags: a", `gw.yaml:1: tags: want a list, got "a"`},
		{"integer got string", "port: x", `gw.yaml:1: port: want an integer, got "x"`},
		{"integer got quoted", "port: \"80\"", `gw.yaml:1: port: want an integer, got "80"`},
		{"integer got float", "port: 1.5", `gw.yaml:1: port: want an integer, got 1.5`},
		{"integer got list", "port: [1]", `gw.yaml:1: port: want an integer, got a list`},
		{"int8 overflow", "small: 300", `gw.yaml:1: small: 300 is out of range for int8`},
		{"uint negative", "count: -1", `gw.yaml:1: count: want a non-negative integer, got -1`},
		{"uint16 overflow", "count: 70000", `gw.yaml:1: count: 70000 is out of range for uint16`},
		{"bool got string", "debug: yes", `gw.yaml:1: debug: want a boolean, got "yes"`},
		{"bool got integer", "debug: 1", `gw.yaml:1: debug: want a boolean, got 1`},
		{"float got string", "ratio: abc", `gw.yaml:1: ratio: want a number, got "abc"`},
		{"duration as integer", "limits:\n  idle_timeout: 10", `gw.yaml:2: limits.idle_timeout: want a duration such as 10s, got 10`},
		{"duration garbage", "limits:\n  idle_timeout: abc", `gw.yaml:2: limits.idle_timeout: want a duration such as 10s, got "abc"`},
		{"size negative", "limits: {max_body: -1}", `gw.yaml:1: limits.max_body: want a non-negative size, got -1`},
		{"size fraction", "limits: {max_body: 1.5GiB}", `gw.yaml:1: limits.max_body: want a size such as 16MiB or 64KB, got "1.5GiB"`},
		{"size unit", "limits: {max_body: 16 furlongs}", `gw.yaml:1: limits.max_body: want a size such as 16MiB or 64KB, got "16 furlongs"`},
		{"size overflow", "limits: {buffer: 4GiB}", `gw.yaml:1: limits.buffer: size 4GiB is out of range for uint32`},
		{"size overflow int64", "limits: {max_body: 16EiB}", `gw.yaml:1: limits.max_body: size 16EiB is out of range for int64`},
		{"struct got scalar", "limits: 10s", `gw.yaml:1: limits: want a mapping, got "10s"`},
		{"pointer to struct got list", "backup: []", `gw.yaml:1: backup: want a mapping, got a list`},
		{"map got list", "routes: [a]", `gw.yaml:1: routes: want a mapping, got a list`},
		{"map key not a string", "labels: {1: a}", `gw.yaml:1: labels.1: want a string, got 1`},
		{"text unmarshaler error", "tenants:\n  - allow: [10.0.0.0]", `gw.yaml:2: tenants[0].allow[0]: netip.ParsePrefix("10.0.0.0"): no '/'`},
		{"text unmarshaler got mapping", "listen: {a: b}", `gw.yaml:1: listen: want a string, got a mapping`},
		{"pin deep in list", "tenants:\n  - name: a\n  - name: b\n    connector_pins:\n      - abc", `gw.yaml:5: tenants[1].connector_pins[0]: invalid pin "abc": want 8 hex digits`},
		{"duplicate key", "name: a\nport: 1\nname: b", `gw.yaml:3: name: duplicate key, first defined at line 1`},
		{"duplicate nested key", "routes:\n  web: {}\n  web: {}", `gw.yaml:3: routes.web: duplicate key, first defined at line 2`},
		{"multi-document", "name: a\n---\nname: b\n", `gw.yaml:2: more than one document (---) is not supported`},
		{"top level list", "- a\n- b", `gw.yaml:1: want a mapping at the top level, got a list`},
		{"top level scalar", "hello", `gw.yaml:1: want a mapping at the top level, got "hello"`},
		{"syntax error", "name: a\n  port: 1", `gw.yaml:2: mapping values are not allowed in this context`},
		{"unclosed flow", "name: [a", `gw.yaml:1: did not find expected ',' or ']'`},
		{"merge key", "name: a\n<<: {port: 1}", `gw.yaml:2: merge keys (<<) are not supported`},
		{"non-scalar key", "? [a]\n: b", `gw.yaml:1: want a scalar key, got a list`},
		{"undefined alias", "name: *nope", `gw.yaml: unknown anchor 'nope' referenced`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got gateway
			err := Decode(file, []byte(tt.yaml), &got)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode error = %v (%T), want *Error", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("Decode error =\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestDecodeMultipleErrorsSorted(t *testing.T) {
	// The error inside the alias target is found last but sorts by its line.
	doc := "port: &p x\nlimits:\n  idle_timeout: 10\nsmall: *p\nnmae: y\n"
	want := strings.Join([]string{
		`gw.yaml:1: port: want an integer, got "x"`,
		`gw.yaml:1: small: want an integer, got "x"`,
		`gw.yaml:3: limits.idle_timeout: want a duration such as 10s, got 10`,
		`gw.yaml:5: nmae: unknown key, did you mean "name"?`,
	}, "\n")
	var got gateway
	err := Decode(file, []byte(doc), &got)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Decode error = %v (%T), want Errors", err, err)
	}
	if err.Error() != want {
		t.Errorf("Decode error =\n%s\nwant\n%s", err, want)
	}
	if got.Limits.IdleTimeout != 0 || got.Port != 0 {
		t.Errorf("bad values were stored: %+v", got)
	}
}

func TestDecodeErrorCap(t *testing.T) {
	tests := []struct {
		name    string
		keys    int
		wantLen int
	}{
		{"shown in full", maxShown, maxShown},
		{"summarised", 30, 30},
		{"collection stops", 3 * maxErrors, maxErrors},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			for i := range tt.keys {
				b.WriteString("bogus" + strings.Repeat("x", i) + ": 1\n")
			}
			err := Decode(file, []byte(b.String()), &gateway{})
			var es Errors
			if !errors.As(err, &es) || len(es) != tt.wantLen {
				t.Fatalf("Decode error has %d problems, want %d", len(es), tt.wantLen)
			}
			lines := strings.Split(err.Error(), "\n")
			wantLines := min(tt.wantLen, maxShown+1)
			if len(lines) != wantLines {
				t.Errorf("Error() has %d lines, want %d", len(lines), wantLines)
			}
			if tt.wantLen > maxShown && lines[maxShown] != "... and "+strconv.Itoa(tt.wantLen-maxShown)+" more" {
				t.Errorf("last line = %q", lines[maxShown])
			}
		})
	}
}

func TestDecodeAliasBomb(t *testing.T) {
	doc := `
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`
	var got bomb
	start := time.Now()
	err := Decode(file, []byte(doc), &got)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Decode took %v", elapsed)
	}
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Error(), "document too large") {
		t.Fatalf("Decode error = %v, want document too large", err)
	}
}

// bomb accepts the nested lists of an alias bomb.
type bomb struct {
	A []string
	B [][]string
	C [][][]string
	D [][][][]string
	E [][][][][]string
	F [][][][][][]string
	G [][][][][][][]string
	H [][][][][][][][]string
	I [][][][][][][][][]string
}

func TestDecodeSelfAlias(t *testing.T) {
	type node struct {
		Name string
		Next *node
	}
	var got node
	err := Decode(file, []byte("next: &n\n  next: *n\n"), &got)
	want := `gw.yaml:2: next.next.next: alias *n refers to itself`
	if err == nil || err.Error() != want {
		t.Errorf("Decode error = %v, want %s", err, want)
	}
}

func TestDecodeBadTarget(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"not a pointer", gateway{}},
		{"nil pointer", (*gateway)(nil)},
		{"pointer to map", &map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Decode(file, []byte("a: 1"), tt.v); err == nil {
				t.Error("Decode succeeded")
			}
		})
	}
}

func TestDecodeUnsupportedType(t *testing.T) {
	err := Decode(file, []byte("c: 1"), &unsupported{})
	want := `gw.yaml:1: c: unsupported field type chan int`
	if err == nil || err.Error() != want {
		t.Errorf("Decode error = %v, want %s", err, want)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte("name: edge\nport: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got gateway
	err := Load(path, &got)
	var e *Error
	if !errors.As(err, &e) || e.File != path || e.Line != 2 || e.Path != "port" {
		t.Errorf("Load error = %#v, want %s:2 at port", err, path)
	}
	if err := Load(filepath.Join(t.TempDir(), "missing.yaml"), &got); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load missing file error = %v, want os.ErrNotExist", err)
	}
}
