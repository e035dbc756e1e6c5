package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// field is a struct field reachable from a YAML key.
type field struct {
	name  string
	index []int // for reflect.Value.FieldByIndex, through inline structs
	bytes bool  // tagged `config:"bytes"`
}

// structInfo lists the keys a struct type accepts, in declaration order.
type structInfo struct {
	fields []field
	byName map[string]int
	err    error // the type cannot be decoded into, e.g. duplicate keys
}

func (d *decoder) structInfo(t reflect.Type) *structInfo {
	if info, ok := d.structs[t]; ok {
		return info
	}
	info := &structInfo{byName: make(map[string]int)}
	info.err = info.add(t, nil)
	d.structs[t] = info
	return info
}

// add appends the fields of struct type t, reached through index.
func (info *structInfo) add(t reflect.Type, index []int) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		inline := slices.Contains(strings.Split(opts, ","), "inline")
		if tag == "-" || (!f.IsExported() && !(f.Anonymous && inline)) {
			continue
		}
		idx := append(slices.Clip(index), i)
		if inline {
			if f.Type.Kind() != reflect.Struct {
				return fmt.Errorf("inline field %s.%s must be a struct, not %s", t, f.Name, f.Type)
			}
			if err := info.add(f.Type, idx); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if _, dup := info.byName[name]; dup {
			return fmt.Errorf("key %q is declared twice in %s", name, t)
		}
		info.byName[name] = len(info.fields)
		info.fields = append(info.fields, field{name: name, index: idx, bytes: hasOption(f.Tag.Get("config"), "bytes")})
	}
	return nil
}

func hasOption(tag, opt string) bool {
	return slices.Contains(strings.Split(tag, ","), opt)
}

// structure decodes a mapping into the struct v.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.failf(n, path, "want a mapping, got %s", describe(n))
		return
	}
	info := d.structInfo(v.Type())
	if info.err != nil {
		d.fail(n.Line, path, info.err)
		return
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content) && !d.stopped; i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(key, path, seen)
		if !ok {
			continue
		}
		fpath := Key(path, name)
		j, ok := info.byName[name]
		if !ok {
			d.fail(key.Line, fpath, unknownKey(name, info.fields))
			continue
		}
		d.lines[fpath] = key.Line
		f := info.fields[j]
		d.value(val, v.FieldByIndex(f.index), fpath, f.bytes)
	}
}

// key checks a mapping key: a scalar, not a merge key, not seen before in
// this mapping. seen maps keys to the line of their first use.
func (d *decoder) key(key *yaml.Node, path string, seen map[string]int) (string, bool) {
	if key.Kind == yaml.AliasNode && key.Alias != nil {
		key = key.Alias
	}
	switch {
	case key.Kind != yaml.ScalarNode:
		d.failf(key, path, "want a scalar key, got %s", describe(key))
		return "", false
	case key.ShortTag() == "!!merge":
		d.failf(key, path, "merge keys (<<) are not supported")
		return "", false
	}
	if first, dup := seen[key.Value]; dup {
		d.failf(key, Key(path, key.Value), "duplicate key, first defined at line %d", first)
		return "", false
	}
	seen[key.Value] = key.Line
	return key.Value, true
}

// unknownKey reports an unknown key, suggesting the closest allowed one.
func unknownKey(name string, fields []field) error {
	best, bestDist := "", 3
	for _, f := range fields {
		if len(f.name) > len(name)+2 || len(name) > len(f.name)+2 {
			continue // too far apart; skip the quadratic distance
		}
		if dist := levenshtein(name, f.name); dist < bestDist && dist < len(name) {
			best, bestDist = f.name, dist
		}
	}
	if best == "" {
		return fmt.Errorf("unknown key")
	}
	return fmt.Errorf("unknown key, did you mean %q?", best)
}

// levenshtein returns the edit distance between a and b, in bytes.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// list decodes a sequence into the slice v.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	if n.Kind != yaml.SequenceNode {
		d.failf(n, path, "want a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		if d.stopped {
			break
		}
		ipath := Index(path, i)
		d.lines[ipath] = item.Line
		d.value(item, s.Index(i), ipath, bytes)
	}
	v.Set(s)
}

// mapping decodes a mapping into the map v; keys decode like scalar values.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	if n.Kind != yaml.MappingNode {
		d.failf(n, path, "want a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, len(n.Content)/2))
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content) && !d.stopped; i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(key, path, seen)
		if !ok {
			continue
		}
		epath := Key(path, name)
		d.lines[epath] = key.Line
		k := reflect.New(t.Key()).Elem()
		before := len(d.errs)
		d.value(key, k, epath, false)
		e := reflect.New(t.Elem()).Elem()
		d.value(val, e, epath, bytes)
		if len(d.errs) == before {
			v.SetMapIndex(k, e)
		}
	}
}
