package config

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// Key returns the path of the key named key inside parent:
// Key("", "tenants") is "tenants", Key("tenants[1]", "name") is
// "tenants[1].name". A key that is empty or contains dots, brackets, quotes,
// spaces or control characters is quoted: Key("routes", "a.b") is
// `routes["a.b"]`.
func Key(parent, key string) string {
	if needsQuote(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// Index returns the path of element i of the list at parent:
// Index("tenants", 1) is "tenants[1]".
func Index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func needsQuote(key string) bool {
	if key == "" {
		return true
	}
	for _, r := range key {
		switch {
		case strings.ContainsRune(`.[]"\`, r), unicode.IsSpace(r), !unicode.IsPrint(r):
			return true
		}
	}
	return false
}

// joinPath appends the relative path child to parent: index and quoted
// children ("[0].name") join without a dot, keys ("name") with one.
func joinPath(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "":
		return parent
	case child[0] == '[':
		return parent + child
	default:
		return parent + "." + child
	}
}

// parentPath strips the last element of path: "a.b[2]" becomes "a.b", "a"
// becomes "". It reports false for the document path "".
func parentPath(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	last := 0
	for i := 0; i < len(path); {
		last = i
		i = elementEnd(path, i)
	}
	return path[:last], true
}

// elementEnd returns the offset just past the path element starting at i:
// ".key", "key", "[3]" or `["quoted key"]`. Malformed brackets run to the
// end of the path.
func elementEnd(path string, i int) int {
	if path[i] != '[' {
		j := strings.IndexAny(path[i+1:], ".[")
		if j < 0 {
			return len(path)
		}
		return i + 1 + j
	}
	rest := path[i+1:]
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil || !strings.HasPrefix(rest[len(q):], "]") {
			return len(path)
		}
		return i + 1 + len(q) + 1
	}
	j := strings.IndexByte(rest, ']')
	if j < 0 {
		return len(path)
	}
	return i + 1 + j + 1
}

// Prefix returns err with the path of every *FieldError in its tree moved
// under prefix, so that a nested struct's Validate can be reused by its
// parent: Prefix("tenants[1]", t.Validate()). A *FieldError "name" becomes
// "tenants[1].name", "[0]" becomes "tenants[1][0]". An error in the tree that
// carries no *FieldError is attributed to prefix itself. Joined errors
// (Unwrap() []error) are rebuilt with errors.Join; a chain of single wrappers
// around a *FieldError keeps its text and is placed at the inner path. It
// returns nil when err is nil.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	if fe, ok := err.(*FieldError); ok {
		return &FieldError{Path: joinPath(prefix, fe.Path), Err: fe.Err}
	}
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		return prefixAll(prefix, multi.Unwrap())
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Path: joinPath(prefix, fe.Path), Err: err}
	}
	return &FieldError{Path: prefix, Err: err}
}

func prefixAll(prefix string, errs []error) error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		if e != nil {
			out = append(out, Prefix(prefix, e))
		}
	}
	return errors.Join(out...)
}
