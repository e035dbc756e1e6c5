package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestDecodeValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // one line per problem
	}{
		{
			name: "valid",
			yaml: "name: edge\ntenants: [{name: a}]",
		},
		{
			name: "missing top-level key points at the document",
			yaml: "# gateway\nport: 1\nroutes: {web: {backend: x}}\n",
			want: []string{`gw.yaml:2: name: required`},
		},
		{
			name: "empty file has no lines",
			yaml: "",
			want: []string{`gw.yaml: name: required`, `gw.yaml: at least one tenant or route is required`},
		},
		{
			name: "missing nested key points at its parent",
			yaml: "name: edge\nbackup:\n  max_body: 1KiB\nroutes: {web: {backend: x}}\n",
			want: []string{`gw.yaml:2: backup.idle_timeout: must be positive`},
		},
		{
			name: "present key points at itself",
			yaml: "name: edge\nbackup:\n  max_body: 1KiB\n  idle_timeout: 0s\nroutes: {web: {backend: x}}\n",
			want: []string{`gw.yaml:4: backup.idle_timeout: must be positive`},
		},
		{
			name: "prefixed tenant errors",
			yaml: "name: edge\ntenants:\n  - name: a\n  - connector_pins:\n      - 0000abcd\n      - 0000abcd\n",
			want: []string{
				`gw.yaml:4: tenants[1].name: required`,
				`gw.yaml:6: tenants[1].connector_pins[1]: duplicate pin "0000abcd"`,
			},
		},
		{
			name: "wrapped field error keeps its context",
			yaml: "name: edge\nroutes:\n  web:\n    weight: 1\n",
			want: []string{`gw.yaml:3: route web: routes.web.backend: required`},
		},
		{
			name: "sorted by line",
			yaml: "tenants:\n  - {}\nbackup: {idle_timeout: -1s}\n",
			want: []string{
				`gw.yaml:1: name: required`,
				`gw.yaml:2: tenants[0].name: required`,
				`gw.yaml:3: backup.idle_timeout: must be positive`,
			},
		},
		{
			name: "not run after decode errors",
			yaml: "port: x",
			want: []string{`gw.yaml:1: port: want an integer, got "x"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Decode(file, []byte(tt.yaml), &checked{})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode succeeded, want %q", tt.want)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Decode error =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestDecodeValidateErrorTree(t *testing.T) {
	err := Decode(file, []byte("name: edge\ntenants:\n  - {}\n"), &checked{})
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 || e.Path != "tenants[0].name" {
		t.Fatalf("Decode error = %#v, want *Error at line 3, tenants[0].name", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "tenants[0].name" {
		t.Errorf("errors.As(*FieldError) = %#v", fe)
	}
}

// custom is validated by a function, to exercise unusual error trees.
type custom struct {
	Name  string   `yaml:"name"`
	Items []string `yaml:"items"`
	check func() error
}

func (c *custom) Validate() error { return c.check() }

func TestDecodeValidateShapes(t *testing.T) {
	const doc = "name: a\nitems:\n  - x\n  - y\n"
	tests := []struct {
		name  string
		check func() error
		want  string
	}{
		{"document path", func() error { return Fieldf("", "bad") }, `gw.yaml:1: bad`},
		{"plain error", func() error { return errors.New("bad") }, `gw.yaml: bad`},
		{"multi %w", func() error {
			return fmt2(Fieldf("items[1]", "b"), Fieldf("name", "a"))
		}, "gw.yaml:1: name: a\ngw.yaml:4: items[1]: b"},
		{"wrapped join", func() error {
			return wrap(errors.Join(Fieldf("items[0]", "x"), nil))
		}, `gw.yaml:3: items[0]: x`},
		{"unknown path uses nearest ancestor", func() error {
			return Fieldf("items[7].deep", "missing")
		}, `gw.yaml:2: items[7].deep: missing`},
		{"unparsable path", func() error { return Fieldf(`items["x`, "odd") }, `gw.yaml:2: items["x: odd`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Decode(file, []byte(doc), &custom{check: tt.check})
			if err == nil || err.Error() != tt.want {
				t.Errorf("Decode error =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestFieldPaths(t *testing.T) {
	err := errors.Join(Fieldf("a", "x"), fmt.Errorf("wrapped: %w", Field("b[0].c", errors.New("y"))), errors.New("plain"))
	got := FieldPaths(err)
	if len(got) != 2 || got[0] != "a" || got[1] != "b[0].c" {
		t.Fatalf("FieldPaths = %q", got)
	}
	if FieldPaths(nil) != nil {
		t.Fatal("FieldPaths(nil) is not empty")
	}
}
