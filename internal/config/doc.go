// Package config decodes sekisho's YAML configuration files strictly and
// reports every problem with its position in the file.
//
// Decode walks the YAML node tree itself instead of relying on yaml.v3's
// reflection, so that an unknown key, a duplicate key, a scalar of the wrong
// type or a value out of range becomes an *Error naming file, line and key
// path, for example:
//
//	gateway.yaml:12: tenants[1].connector_pins[0]: invalid pin "abc": ...
//
// Keys come from `yaml:"name"` struct tags (untagged exported fields use the
// lowercased field name, `yaml:"-"` skips a field, `yaml:",inline"` merges a
// struct's fields into its parent). Integer fields tagged `config:"bytes"`
// also accept sizes such as "16MiB" or "64KB". time.Duration fields require
// a string such as "10s". Types implementing encoding.TextUnmarshaler decode
// from a scalar.
//
// After decoding, a value with a Validate() error method is validated. A
// validator reports a problem with a field by returning a *FieldError (see
// Field, Fieldf, Key, Index and Prefix); Decode places it at the line where
// that field, or its nearest present ancestor, appears in the file.
//
// The package reads no environment and keeps no global state.
package config
