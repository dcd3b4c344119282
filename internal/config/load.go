package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path, applies defaults, and
// validates it. Any problem is returned as an *Error naming the key.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	// Bounded: a path such as /dev/zero must not read until memory ends.
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, &Error{File: path, Fields: []*FieldError{{Key: "(file)",
			Msg: fmt.Sprintf("over %d bytes: not a cutover configuration (a few KiB is usual)", MaxFileBytes)}}}
	}
	c, err := Parse(b)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	return c, nil
}

// DecodeStrict decodes the YAML document b into into (a pointer to a
// struct with yaml tags) as Parse decodes cutover.yaml: every unknown key
// and every value of the wrong type is a *FieldError naming its key path
// and line, all of them, not only the first. Other tools' files (the
// agent's) use it to say the same things the same way.
func DecodeStrict(b []byte, into any) []*FieldError {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return []*FieldError{{Key: "(file)", Msg: "empty"}}
		}
		return []*FieldError{{Key: "(file)", Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if errs := checkNode(root, reflect.TypeOf(into).Elem(), ""); len(errs) > 0 {
		return errs
	}
	if err := root.Decode(into); err != nil {
		return []*FieldError{{Key: "(file)", Msg: err.Error()}}
	}
	return nil
}

// MaxFileBytes is the largest configuration file Load reads: 1 MiB.
const MaxFileBytes = 1 << 20

// Parse decodes YAML onto the defaults and validates the result. Unknown
// keys and values of the wrong type are errors naming their key path.
func Parse(b []byte) (*Config, error) {
	c := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Fields: []*FieldError{{Key: "(file)", Msg: "empty: define at least pools"}}}
		}
		return nil, &Error{Fields: []*FieldError{{Key: "(file)", Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if errs := checkNode(root, reflect.TypeOf(c).Elem(), ""); len(errs) > 0 {
		return nil, &Error{Fields: errs}
	}
	if err := root.Decode(c); err != nil {
		return nil, &Error{Fields: []*FieldError{{Key: "(file)", Msg: err.Error()}}}
	}
	c.applyEtcdDefaults()
	c.applyTracingDefaults()
	if err := c.Validate(); err != nil {
		// Attach line numbers where the key exists in the file.
		var ce *Error
		if errors.As(err, &ce) {
			for _, f := range ce.Fields {
				f.Line = lineOf(root, f.Key)
			}
		}
		return nil, err
	}
	return c, nil
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkNode walks n against the Go type t and reports unknown keys and
// values that do not decode into their field, each with its key path.
func checkNode(n *yaml.Node, t reflect.Type, path string) []*FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	where := path
	if where == "" {
		where = "(top level)"
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			return []*FieldError{{Key: where, Line: n.Line, Msg: cleanDecodeErr(err, n)}}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []*FieldError{{Key: where, Line: n.Line, Msg: fmt.Sprintf("want a mapping of keys, got %s", describe(n))}}
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		var errs []*FieldError
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, &FieldError{Key: join(path, k.Value), Line: k.Line,
					Msg: fmt.Sprintf("unknown key %q (known here: %s)", k.Value, strings.Join(names, ", "))})
				continue
			}
			errs = append(errs, checkNode(v, ft, join(path, k.Value))...)
		}
		return errs
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []*FieldError{{Key: where, Line: n.Line, Msg: fmt.Sprintf("want a mapping, got %s", describe(n))}}
		}
		var errs []*FieldError
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			errs = append(errs, checkNode(v, t.Elem(), join(path, k.Value))...)
		}
		return errs
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []*FieldError{{Key: where, Line: n.Line, Msg: fmt.Sprintf("want a list, got %s", describe(n))}}
		}
		var errs []*FieldError
		for i, item := range n.Content {
			errs = append(errs, checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	default:
		// yaml.v3 truncates a number with a fraction into an integer
		// (min_ready: 0.5 became 0, "all replicas"); a whole one written
		// as a float (1e6, 2.0) it decodes exactly.
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
				var f float64
				if err := n.Decode(&f); err != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
					return []*FieldError{{Key: where, Line: n.Line, Msg: fmt.Sprintf("bad value %s: want a whole number", describe(n))}}
				}
			}
		case reflect.String:
			// No path, URL, command or name holds one; exec and open
			// refuse it only when the value is first used.
			if n.Kind == yaml.ScalarNode && strings.IndexByte(n.Value, 0) >= 0 {
				return []*FieldError{{Key: where, Line: n.Line, Msg: fmt.Sprintf("bad value %s: holds a NUL byte", describe(n))}}
			}
		}
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			return []*FieldError{{Key: where, Line: n.Line, Msg: cleanDecodeErr(err, n)}}
		}
		return nil
	}
}

func cleanDecodeErr(err error, n *yaml.Node) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "cannot unmarshal") {
		return fmt.Sprintf("bad value %s (%s)", describe(n), strings.TrimSpace(msg[i+2:]))
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return fmt.Sprintf("bad value %s: %s", describe(n), msg)
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lineOf finds the line of a dotted key path (with [i] indexes) in n, or 0.
func lineOf(n *yaml.Node, key string) int {
	line := 0
	for _, part := range strings.Split(key, ".") {
		name, idx, hasIdx := part, -1, false
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			if _, err := fmt.Sscanf(part[i:], "[%d]", &idx); err == nil {
				hasIdx = true
			}
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
		if hasIdx {
			if n.Kind != yaml.SequenceNode || idx < 0 || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
