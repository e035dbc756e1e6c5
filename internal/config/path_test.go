package config

import (
	"errors"
	"fmt"
	"testing"
)

func fmt2(a, b error) error { return fmt.Errorf("%w; %w", a, b) }
func wrap(err error) error  { return fmt.Errorf("context: %w", err) }

func TestKeyIndex(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Key("", "tenants"), "tenants"},
		{Key("tenants[1]", "name"), "tenants[1].name"},
		{Index("tenants", 1), "tenants[1]"},
		{Index("", 0), "[0]"},
		{Key("routes", "a.b"), `routes["a.b"]`},
		{Key("", "a[0]"), `["a[0]"]`},
		{Key("m", ""), `m[""]`},
		{Key("m", "with space"), `m["with space"]`},
		{Key(Index(Key("", "tenants"), 2), "connector_pins"), "tenants[2].connector_pins"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParentPath(t *testing.T) {
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"", "", false},
		{"a", "", true},
		{"a.b", "a", true},
		{"a[2]", "a", true},
		{"a[2].b", "a[2]", true},
		{`a["x.y"]`, "a", true},
		{`a["x]\"y"].b`, `a["x]\"y"]`, true},
		{`["k"]`, "", true},
		{`a["x`, "a", true},
		{"a[3", "a", true},
	}
	for _, tt := range tests {
		got, ok := parentPath(tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parentPath(%q) = %q, %v, want %q, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPrefix(t *testing.T) {
	sentinel := errors.New("sentinel")
	tests := []struct {
		name   string
		prefix string
		err    error
		want   string
	}{
		{"nil", "x", nil, "<nil>"},
		{"key child", "tenants[1]", Fieldf("name", "required"), "tenants[1].name: required"},
		{"index child", "tenants[1]", Fieldf("[0]", "bad"), "tenants[1][0]: bad"},
		{"empty child", "tenants[1]", Fieldf("", "bad"), "tenants[1]: bad"},
		{"empty prefix", "", Fieldf("name", "bad"), "name: bad"},
		{"plain error goes to prefix", "limits", sentinel, "limits: sentinel"},
		{"joined", "t", errors.Join(Fieldf("a", "1"), nil, Fieldf("[2]", "2")), "t.a: 1\nt[2]: 2"},
		{"wrapped", "t", wrap(Fieldf("a", "1")), "t.a: context: a: 1"},
		{"nested prefixes", "a", Prefix("b", Prefix("[0]", Fieldf("c", "x"))), "a.b[0].c: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fmt.Sprint(Prefix(tt.prefix, tt.err))
			if got != tt.want {
				t.Errorf("Prefix = %q, want %q", got, tt.want)
			}
		})
	}
	if err := Prefix("x", Field("y", sentinel)); !errors.Is(err, sentinel) {
		t.Errorf("Prefix lost the wrapped error: %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	inner := errors.New("boom")
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "f", Line: 3, Path: "a.b", Err: inner}, "f:3: a.b: boom"},
		{&Error{File: "f", Err: inner}, "f: boom"},
		{&Error{File: "f", Path: "a", Err: inner}, "f: a: boom"},
		{&Error{Line: 2, Err: inner}, "line 2: boom"},
		{&Error{File: "f", Line: 1, Path: "a", Err: Field("a", inner)}, "f:1: a: boom"},
		{&Error{File: "f", Line: 1}, "f:1: invalid value"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if tt.err.Err != nil && !errors.Is(tt.err, inner) {
			t.Errorf("%q does not unwrap to its cause", tt.err)
		}
	}
	es := Errors{{File: "f", Line: 1, Err: inner}, {File: "f", Line: 2, Err: inner}}
	if got, want := es.Error(), "f:1: boom\nf:2: boom"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
	if !errors.Is(es, inner) {
		t.Error("Errors does not unwrap to its problems")
	}
}
