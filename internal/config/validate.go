package config

import (
	"errors"
)

// validator is implemented by config types that check their own values.
type validator interface {
	Validate() error
}

// validate runs v's Validate method, if any, and records each problem it
// reports at the line of its path.
func (d *decoder) validate(v any) {
	if val, ok := v.(validator); ok {
		d.errs = append(d.errs, d.locate(val.Validate())...)
	}
}

// locate splits a validation error tree into located problems. A
// *FieldError, or a chain of single wrappers around one, is placed at the
// line of its path; joined errors are split (context wrapped around a joined
// error is dropped); any other error is reported without a position.
func (d *decoder) locate(err error) []*Error {
	if err == nil {
		return nil
	}
	fe, joined := search(err)
	switch {
	case fe != nil:
		return []*Error{{File: d.file, Line: d.line(fe.Path), Path: fe.Path, Err: err}}
	case joined != nil:
		var out []*Error
		for _, e := range joined.Unwrap() {
			out = append(out, d.locate(e)...)
		}
		return out
	default:
		return []*Error{{File: d.file, Err: err}}
	}
}

// joinedError is an error tree node with several children, as made by
// errors.Join or fmt.Errorf with several %w verbs.
type joinedError interface {
	error
	Unwrap() []error
}

// search follows err's chain of single wrappers to the first *FieldError or
// joined error.
func search(err error) (*FieldError, joinedError) {
	for err != nil {
		switch e := err.(type) {
		case *FieldError:
			return e, nil
		case joinedError:
			return nil, e
		}
		err = errors.Unwrap(err)
	}
	return nil, nil
}

// line returns the line where path, or its nearest present ancestor,
// appears in the file; 0 when none does.
func (d *decoder) line(path string) int {
	for {
		if line, ok := d.lines[path]; ok {
			return line
		}
		parent, ok := parentPath(path)
		if !ok {
			return 0
		}
		path = parent
	}
}
