package config

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// sizeUnits maps the suffixes accepted by `config:"bytes"` fields to their
// multipliers: SI units are powers of 1000, IEC units powers of 1024.
var sizeUnits = map[string]uint64{
	"":    1,
	"B":   1,
	"kB":  1e3,
	"KB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
	"TB":  1e12,
	"PB":  1e15,
	"EB":  1e18,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
	"PiB": 1 << 50,
	"EiB": 1 << 60,
}

var errSizeRange = errors.New("size out of range")

// size decodes a byte size such as 1024, "16MiB" or "64KB" into the integer v.
func (d *decoder) size(n *yaml.Node, v reflect.Value, path string) {
	const want = "a size such as 16MiB or 64KB"
	s, ok := d.scalar(n, path, want, "!!int", "!!str")
	if !ok {
		return
	}
	if strings.HasPrefix(s, "-") {
		d.failf(n, path, "want a non-negative size, got %s", describe(n))
		return
	}
	b, err := parseSize(s)
	if err == nil {
		err = setSize(v, b)
	}
	switch {
	case errors.Is(err, errSizeRange):
		d.failf(n, path, "size %s is out of range for %s", s, v.Type())
	case err != nil:
		d.failf(n, path, "want %s, got %s", want, describe(n))
	}
}

// parseSize parses a non-negative decimal integer with an optional unit,
// optionally separated by a space: "1024", "16MiB", "64 KB".
func parseSize(s string) (uint64, error) {
	digits := strings.TrimLeft(s, "0123456789_")
	num, unit := s[:len(s)-len(digits)], strings.TrimSpace(digits)
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n, err := strconv.ParseUint(strings.ReplaceAll(num, "_", ""), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errSizeRange
	}
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	hi, lo := bits.Mul64(n, mult)
	if hi != 0 {
		return 0, errSizeRange
	}
	return lo, nil
}

// setSize stores b in the signed or unsigned integer v, checking its range.
func setSize(v reflect.Value, b uint64) error {
	if v.CanInt() {
		if b > math.MaxInt64 || v.OverflowInt(int64(b)) {
			return errSizeRange
		}
		v.SetInt(int64(b))
		return nil
	}
	if v.OverflowUint(b) {
		return errSizeRange
	}
	v.SetUint(b)
	return nil
}

// ParseSize parses a byte size as config files write it ("16MiB", "64KB",
// "1024"), for flags that take the same syntax.
func ParseSize(s string) (int64, error) {
	b, err := parseSize(strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	if b > math.MaxInt64 {
		return 0, errSizeRange
	}
	return int64(b), nil
}
