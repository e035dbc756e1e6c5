package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	// maxNodes caps the YAML nodes visited while decoding, counting every
	// visit through an alias, so that alias bombs cannot expand.
	maxNodes = 100_000
	// maxErrors stops decoding once this many problems have been found.
	maxErrors = 100
)

// Load reads the file at path and decodes it with Decode.
func Load(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return Decode(path, data, v)
}

// Decode strictly decodes YAML data (name is used in error messages) into v,
// a non-nil pointer to a struct.
//
// Every problem is reported with its line and key path; one problem is
// returned as an *Error, several as Errors. If decoding succeeds and v has a
// Validate() error method, it is called and each *FieldError in the error
// tree it returns is placed at the line of its path in the file, or of the
// nearest ancestor present (a missing key points at its parent mapping).
func Decode(name string, data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: decode %s: target must be a non-nil pointer to a struct, got %T", name, v)
	}
	root, err := parse(data)
	if err != nil {
		return locateParseError(name, err)
	}
	d := newDecoder(name)
	d.document(root, rv.Elem())
	if len(d.errs) == 0 {
		d.validate(v)
	}
	return d.result()
}

// parse returns the single document's root node, or nil for an empty file.
func parse(data []byte) (root *yaml.Node, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		return nil, &Error{Line: next.Line, Err: errors.New("more than one document (---) is not supported")}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return nil, nil
}

// locateParseError turns a yaml.v3 syntax error ("yaml: line 3: ...") into
// an *Error. yaml.v3 reports positions only in its message text, so the line
// is read from there.
func locateParseError(name string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.File = name
		return e
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, tail, found := strings.Cut(rest, ": ")
		if n, convErr := strconv.Atoi(num); found && convErr == nil {
			line, msg = n, tail
		}
	}
	return &Error{File: name, Line: line, Err: errors.New(msg)}
}

// decoder walks a YAML node tree into Go values, collecting problems.
type decoder struct {
	file    string
	errs    []*Error
	lines   map[string]int // path -> line where it appears
	nodes   int
	stopped bool
	active  map[*yaml.Node]bool // alias targets being decoded
	structs map[reflect.Type]*structInfo
}

func newDecoder(file string) *decoder {
	return &decoder{
		file:    file,
		lines:   make(map[string]int),
		active:  make(map[*yaml.Node]bool),
		structs: make(map[reflect.Type]*structInfo),
	}
}

// failf records a problem at node n.
func (d *decoder) failf(n *yaml.Node, path, format string, args ...any) {
	d.fail(n.Line, path, fmt.Errorf(format, args...))
}

func (d *decoder) fail(line int, path string, err error) {
	if d.stopped {
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Err: err})
	if len(d.errs) >= maxErrors {
		d.stopped = true
	}
}

// result returns nil, the single *Error, or all of them sorted by line with
// unknown lines last.
func (d *decoder) result() error {
	switch len(d.errs) {
	case 0:
		return nil
	case 1:
		return d.errs[0]
	}
	sortErrors(d.errs)
	return Errors(d.errs)
}

// sortErrors orders errs by line, keeping the order of equal lines and
// putting unknown lines last.
func sortErrors(errs []*Error) {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Compare(sortLine(a.Line), sortLine(b.Line))
	})
}

func sortLine(line int) int {
	if line <= 0 {
		return math.MaxInt
	}
	return line
}

// document decodes the top-level node, which must be a mapping.
func (d *decoder) document(root *yaml.Node, v reflect.Value) {
	if root == nil || isNull(root) {
		return
	}
	d.lines[""] = root.Line
	if root.Kind != yaml.MappingNode {
		d.failf(root, "", "want a mapping at the top level, got %s", describe(root))
		return
	}
	d.value(root, v, "", false)
}

// value decodes n into v, which must be settable. bytes is set for fields
// tagged `config:"bytes"`.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	if d.stopped {
		return
	}
	if d.nodes++; d.nodes > maxNodes {
		d.failf(n, path, "document too large: more than %d nodes (counting aliases)", maxNodes)
		d.stopped = true
		return
	}
	switch {
	case n.Kind == yaml.AliasNode:
		d.alias(n, v, path, bytes)
	case isNull(n):
		// A null leaves the zero value in place.
	default:
		d.typed(n, v, path, bytes)
	}
}

func (d *decoder) alias(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	target := n.Alias
	if target == nil || d.active[target] {
		d.failf(n, path, "alias *%s refers to itself", n.Value)
		return
	}
	d.active[target] = true
	d.value(target, v, path, bytes)
	delete(d.active, target)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// typed dispatches on the Go type of v.
func (d *decoder) typed(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(n, v, path)
		return
	case t.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.typed(n, v.Elem(), path, bytes)
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		d.text(n, v, path)
		return
	}
	d.kind(n, v, path, bytes)
}

func (d *decoder) kind(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	switch v.Kind() {
	case reflect.String:
		d.str(n, v, path)
	case reflect.Bool:
		d.boolean(n, v, path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.integer(n, v, path, bytes)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.unsigned(n, v, path, bytes)
	case reflect.Float32, reflect.Float64:
		d.float(n, v, path)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.list(n, v, path, bytes)
	case reflect.Map:
		d.mapping(n, v, path, bytes)
	default:
		d.failf(n, path, "unsupported field type %s", v.Type())
	}
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	s := n.Value
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool", "!!timestamp":
		return s
	}
	return strconv.Quote(s)
}
