package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxShown is how many problems Errors.Error lists before summarising the rest.
const maxShown = 20

// Error is a problem with a config file, located by line and key path.
type Error struct {
	File string
	Line int    // 1-based; 0 when unknown
	Path string // e.g. "tenants[1].connector_pins[0]"; "" for the document
	Err  error
}

// Error formats the problem as "file:line: path: msg", leaving out the
// parts that are empty or unknown.
func (e *Error) Error() string {
	parts := make([]string, 0, 3)
	if loc := e.location(); loc != "" {
		parts = append(parts, loc)
	}
	if e.Path != "" && !carriesPath(e.Err, e.Path) {
		parts = append(parts, e.Path)
	}
	return strings.Join(append(parts, message(e.Err)), ": ")
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) location() string {
	switch {
	case e.Line <= 0:
		return e.File
	case e.File == "":
		return "line " + strconv.Itoa(e.Line)
	default:
		return e.File + ":" + strconv.Itoa(e.Line)
	}
}

// carriesPath reports whether err already prints path itself, which is the
// case when it is, or wraps, a *FieldError for that path.
func carriesPath(err error, path string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Path == path
}

func message(err error) string {
	if err == nil {
		return "invalid value"
	}
	return err.Error()
}

// Errors is returned when a file has more than one problem, sorted by line.
type Errors []*Error

// Error lists the problems one per line, at most maxShown of them followed by
// a count of the rest.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i == maxShown {
			fmt.Fprintf(&b, "\n... and %d more", len(es)-maxShown)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns every problem, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// FieldError names the offending field by its path in the file, such as
// "tenants[1].name". Validators return it, alone or joined with others.
type FieldError struct {
	Path string
	Err  error
}

// Error formats the problem as "path: msg".
func (e *FieldError) Error() string {
	if e.Path == "" {
		return message(e.Err)
	}
	return e.Path + ": " + message(e.Err)
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Fieldf returns a *FieldError for path whose Err is fmt.Errorf(format, args...).
func Fieldf(path string, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

// Field returns a *FieldError for path wrapping err.
func Field(path string, err error) *FieldError {
	return &FieldError{Path: path, Err: err}
}

// FieldPaths returns the path of every *FieldError in err's tree, in the
// order a depth-first walk meets them.
func FieldPaths(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe.Path)
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
