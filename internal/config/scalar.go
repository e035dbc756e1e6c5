package config

import (
	"encoding"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// scalar returns n's value if n is a scalar with one of tags; otherwise it
// records "want <want>, got ..." and reports false.
func (d *decoder) scalar(n *yaml.Node, path, want string, tags ...string) (string, bool) {
	if n.Kind == yaml.ScalarNode {
		tag := n.ShortTag()
		for _, t := range tags {
			if tag == t {
				return n.Value, true
			}
		}
	}
	d.failf(n, path, "want %s, got %s", want, describe(n))
	return "", false
}

func (d *decoder) str(n *yaml.Node, v reflect.Value, path string) {
	if s, ok := d.scalar(n, path, "a string", "!!str"); ok {
		v.SetString(s)
	}
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a boolean", "!!bool")
	if !ok {
		return
	}
	switch strings.ToLower(s) {
	case "true":
		v.SetBool(true)
	case "false":
		v.SetBool(false)
	default:
		d.failf(n, path, "want a boolean, got %s", describe(n))
	}
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	if bytes {
		d.size(n, v, path)
		return
	}
	s, ok := d.scalar(n, path, "an integer", "!!int")
	if !ok {
		return
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
	switch {
	case errors.Is(err, strconv.ErrRange):
		d.failf(n, path, "%s is out of range for %s", s, v.Type())
	case err != nil:
		d.failf(n, path, "want an integer, got %s", describe(n))
	default:
		v.SetInt(i)
	}
}

func (d *decoder) unsigned(n *yaml.Node, v reflect.Value, path string, bytes bool) {
	if bytes {
		d.size(n, v, path)
		return
	}
	s, ok := d.scalar(n, path, "a non-negative integer", "!!int")
	if !ok {
		return
	}
	u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
	switch {
	case errors.Is(err, strconv.ErrRange):
		d.failf(n, path, "%s is out of range for %s", s, v.Type())
	case err != nil:
		d.failf(n, path, "want a non-negative integer, got %s", describe(n))
	default:
		v.SetUint(u)
	}
}

func (d *decoder) float(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a number", "!!float", "!!int")
	if !ok {
		return
	}
	f, err := parseFloat(s, n.ShortTag() == "!!int", v.Type().Bits())
	switch {
	case errors.Is(err, strconv.ErrRange):
		d.failf(n, path, "%s is out of range for %s", s, v.Type())
	case err != nil:
		d.failf(n, path, "want a number, got %s", describe(n))
	default:
		v.SetFloat(f)
	}
}

// parseFloat parses a YAML !!float, or an !!int when isInt, such as "1.5",
// "1e3", ".inf", "0x10" or "1_000".
func parseFloat(s string, isInt bool, bits int) (float64, error) {
	switch strings.ToLower(s) {
	case ".inf", "+.inf":
		return math.Inf(1), nil
	case "-.inf":
		return math.Inf(-1), nil
	case ".nan":
		return math.NaN(), nil
	}
	plain := strings.ReplaceAll(s, "_", "")
	if !isInt {
		return strconv.ParseFloat(plain, bits)
	}
	if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
		return float64(i), nil
	}
	u, err := strconv.ParseUint(plain, 0, 64)
	return float64(u), err
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a duration such as 10s", "!!str")
	if !ok {
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.failf(n, path, "want a duration such as 10s, got %s", describe(n))
		return
	}
	v.SetInt(int64(dur))
}

// text decodes any non-null scalar through encoding.TextUnmarshaler.
func (d *decoder) text(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.failf(n, path, "want a string, got %s", describe(n))
		return
	}
	u := v.Addr().Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(n.Value)); err != nil {
		d.fail(n.Line, path, err)
	}
}
