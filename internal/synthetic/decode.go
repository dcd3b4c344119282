package synthetic

// Strict decoding of a suite file: the YAML node tree is walked by hand, so
// that every problem is reported with its key path and line, and cross-field
// rules (messages or prompt, done only for streams) sit next to the keys.

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder collects the problems found while decoding one suite file.
type decoder struct {
	errs []*FieldError
}

// field is a known key of a mapping and what to do with its value.
type field struct {
	name string
	set  func(v *yaml.Node, key string)
}

// reservedBody are request fields a case sets with its own keys.
var reservedBody = []string{"messages", "prompt", "stream"}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	if key == "" {
		key = "(top level)"
	}
	d.errs = append(d.errs, &FieldError{Key: key, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// decode parses b into a Suite with defaults applied; problems go to d.errs.
func (d *decoder) decode(b []byte) *Suite {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		d.errorf(nil, "(file)", "not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || isNull(doc.Content[0]) {
		d.errorf(nil, "(file)", "empty: define at least one case under cases")
		return nil
	}
	root := doc.Content[0]
	s := &Suite{Concurrency: 1, Repeat: 1, Timeout: DefaultTimeout}
	present := d.mapping(root, "", []field{
		{"concurrency", func(v *yaml.Node, key string) { s.Concurrency = d.integer(v, key, 1) }},
		{"repeat", func(v *yaml.Node, key string) { s.Repeat = d.integer(v, key, 1) }},
		{"timeout", func(v *yaml.Node, key string) { s.Timeout = d.duration(v, key) }},
		{"defaults", func(v *yaml.Node, key string) { s.Defaults = d.body(v, key) }},
		{"cases", func(v *yaml.Node, key string) { s.Cases = d.cases(v, key) }},
	})
	if root.Kind == yaml.MappingNode && len(s.Cases) == 0 && present["cases"] == nil {
		d.errorf(root, "cases", "missing: define at least one case")
	}
	return s
}

// mapping decodes the mapping n at path with fs, reporting unknown keys and
// a node that is not a mapping. It returns the key nodes of the keys present
// with a non-null value.
func (d *decoder) mapping(n *yaml.Node, path string, fs []field) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of keys, got %s", describe(n))
		return nil
	}
	present := map[string]*yaml.Node{}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		key := join(path, k.Value)
		f := lookup(fs, k.Value)
		first, dup := seen[k.Value]
		seen[k.Value] = k
		switch {
		case dup:
			// The YAML library keeps the last silently: a case or an
			// assertion would be lost.
			d.errorf(k, key, "duplicate key %q (also on line %d)", k.Value, first.Line)
		case f == nil:
			d.errorf(k, key, "unknown key %q (known here: %s)", k.Value, names(fs))
		case !isNull(v):
			present[k.Value] = k
			f.set(v, key)
		}
	}
	return present
}

func lookup(fs []field, name string) *field {
	for i := range fs {
		if fs[i].name == name {
			return &fs[i]
		}
	}
	return nil
}

func names(fs []field) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.name
	}
	return strings.Join(s, ", ")
}

// cases decodes the cases list and checks that names are unique.
func (d *decoder) cases(n *yaml.Node, path string) []Case {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a list of cases, got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		d.errorf(n, path, "empty: define at least one case")
		return nil
	}
	cs := make([]Case, len(n.Content))
	seen := map[string]int{}
	for i, item := range n.Content {
		item = deref(item)
		key := fmt.Sprintf("%s[%d]", path, i)
		cs[i] = d.testCase(item, key)
		if cs[i].Name == "" {
			continue
		}
		if j, dup := seen[cs[i].Name]; dup {
			d.errorf(item, key+".name", "duplicate name %q (also %s[%d])", cs[i].Name, path, j)
			continue
		}
		seen[cs[i].Name] = i
	}
	return cs
}

// testCase decodes one case at path and applies its defaults.
func (d *decoder) testCase(n *yaml.Node, path string) Case {
	var c Case
	var expect *yaml.Node
	hasPrompt := false
	present := d.mapping(n, path, []field{
		{"name", func(v *yaml.Node, key string) { c.Name = d.str(v, key) }},
		{"path", func(v *yaml.Node, key string) {
			c.Path = d.str(v, key)
			if !strings.HasPrefix(c.Path, "/") {
				d.errorf(v, key, "want a path starting with /, got %q", c.Path)
			}
		}},
		{"messages", func(v *yaml.Node, key string) { c.Messages = d.messages(v, key) }},
		{"prompt", func(v *yaml.Node, key string) { c.Prompt, hasPrompt = d.str(v, key), true }},
		{"stream", func(v *yaml.Node, key string) { c.Stream = d.boolean(v, key) }},
		{"body", func(v *yaml.Node, key string) { c.Body = d.body(v, key) }},
		{"expect", func(v *yaml.Node, key string) { expect = v }},
	})
	if present == nil {
		return c
	}
	if present["name"] == nil {
		d.errorf(n, path+".name", "missing: every case needs a name")
	}
	switch msgs := present["messages"]; {
	case msgs != nil && hasPrompt:
		d.errorf(present["prompt"], path, "has both messages and prompt: keep messages for a chat request or prompt for a completion")
	case msgs == nil && !hasPrompt:
		d.errorf(n, path, "needs messages (a chat request) or prompt (a completion request)")
	}
	if c.Path == "" {
		c.Path = ChatPath
		if hasPrompt {
			c.Path = CompletionPath
		}
	}
	c.Expect = Expect{Status: 200, Done: c.Stream}
	if expect != nil {
		d.expect(expect, path+".expect", &c)
	}
	return c
}

// expect decodes a case's expectations into c.Expect.
func (d *decoder) expect(n *yaml.Node, path string, c *Case) {
	e := &c.Expect
	d.mapping(n, path, []field{
		{"status", func(v *yaml.Node, key string) {
			if e.Status = d.integer(v, key, 100); e.Status > 599 {
				d.errorf(v, key, "want an HTTP status (100 to 599), got %d", e.Status)
			}
		}},
		{"model", func(v *yaml.Node, key string) { e.Model = d.str(v, key) }},
		{"contains", func(v *yaml.Node, key string) { e.Contains = d.stringList(v, key) }},
		{"contains_i", func(v *yaml.Node, key string) { e.ContainsI = d.stringList(v, key) }},
		{"not_contains", func(v *yaml.Node, key string) { e.NotContains = d.stringList(v, key) }},
		{"regex", func(v *yaml.Node, key string) {
			src := d.str(v, key)
			re, err := regexp.Compile(src)
			if err != nil {
				d.errorf(v, key, "bad regex %q: %s", src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
				return
			}
			e.Regex = re
		}},
		{"json", func(v *yaml.Node, key string) { e.JSON = d.boolean(v, key) }},
		{"done", func(v *yaml.Node, key string) {
			if e.Done = d.boolean(v, key); e.Done && !c.Stream {
				d.errorf(v, key, "applies to streamed cases only (stream: true)")
			}
		}},
		{"max_ttft_ms", func(v *yaml.Node, key string) { e.MaxTTFT = d.millis(v, key) }},
		{"max_total_ms", func(v *yaml.Node, key string) { e.MaxTotal = d.millis(v, key) }},
		{"min_tokens", func(v *yaml.Node, key string) { e.MinTokens = d.integer(v, key, 0) }},
	})
}

// messages decodes a chat request's messages: a non-empty list of mappings,
// each with a role and a content (a string, or a list of content parts).
func (d *decoder) messages(n *yaml.Node, path string) []map[string]any {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a list of messages like [{role: user, content: \"...\"}], got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		d.errorf(n, path, "empty: a chat request needs at least one message")
		return nil
	}
	msgs := make([]map[string]any, 0, len(n.Content))
	for i, item := range n.Content {
		item = deref(item)
		key := fmt.Sprintf("%s[%d]", path, i)
		m := d.object(item, key)
		if m == nil {
			continue
		}
		if role, ok := m["role"].(string); !ok || role == "" {
			d.errorf(item, key+".role", "missing: want a role such as user, system or assistant")
		}
		switch m["content"].(type) {
		case string, []any:
		case nil:
			d.errorf(item, key+".content", "missing: want the message text")
		default:
			d.errorf(item, key+".content", "want a string or a list of content parts, got %s", describe(valueNode(item, "content")))
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// body decodes free request fields, refusing those a case sets itself.
func (d *decoder) body(n *yaml.Node, path string) map[string]any {
	m := d.object(n, path)
	for _, k := range reservedBody {
		if _, ok := m[k]; ok {
			d.errorf(keyNode(n, k), join(path, k), "set per case with the case's own %s key, not here", k)
			delete(m, k)
		}
	}
	return m
}

// object decodes a mapping of JSON-compatible values.
func (d *decoder) object(n *yaml.Node, path string) map[string]any {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of keys, got %s", describe(n))
		return nil
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		d.errorf(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil
	}
	v, err := jsonValue(m)
	if err != nil {
		d.errorf(n, path, "not representable in JSON: %v", err)
		return nil
	}
	out, _ := v.(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	return out
}

// jsonValue converts a decoded YAML value into one encoding/json accepts:
// mappings must have string keys, numbers must be finite.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ks, err)
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		for i, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			v[i] = c
		}
		return v, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("number %v is not finite", v)
		}
		return v, nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	default:
		if _, err := json.Marshal(v); err != nil {
			return nil, fmt.Errorf("value %v: %w", v, err)
		}
		return v, nil
	}
}

// scalar reports whether n is a scalar, else records an error.
func (d *decoder) scalar(n *yaml.Node, key, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "want %s, got %s", want, describe(n))
		return false
	}
	return true
}

func (d *decoder) str(n *yaml.Node, key string) string {
	var s string
	if d.scalar(n, key, "a string") {
		_ = n.Decode(&s) // a scalar always decodes into a string
	}
	return s
}

func (d *decoder) stringList(n *yaml.Node, key string) []string {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, key, "want a list of strings like [\"a\", \"b\"], got %s", describe(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		item = deref(item)
		k := fmt.Sprintf("%s[%d]", key, i)
		if s := d.str(item, k); s != "" {
			out = append(out, s)
		} else if item.Kind == yaml.ScalarNode {
			d.errorf(item, k, "empty string: it would always match")
		}
	}
	return out
}

func (d *decoder) boolean(n *yaml.Node, key string) bool {
	var b bool
	if d.scalar(n, key, "true or false") && n.Decode(&b) != nil {
		d.errorf(n, key, "want true or false, got %s", describe(n))
	}
	return b
}

// integer decodes a whole number of at least minimum.
func (d *decoder) integer(n *yaml.Node, key string, minimum int) int {
	var i int
	if !d.scalar(n, key, "a whole number") {
		return 0
	}
	if err := n.Decode(&i); err != nil {
		d.errorf(n, key, "want a whole number, got %s", describe(n))
		return 0
	}
	switch {
	case i < 0 && minimum >= 0:
		d.errorf(n, key, "must not be negative, got %d", i)
	case i < minimum:
		d.errorf(n, key, "must be at least %d, got %d", minimum, i)
	}
	return i
}

// maxMillis bounds a millisecond limit (one day), well inside a
// time.Duration.
const maxMillis = 24 * 60 * 60 * 1000

// millis decodes a positive number of milliseconds.
func (d *decoder) millis(n *yaml.Node, key string) time.Duration {
	i := d.integer(n, key, 1)
	if i > maxMillis {
		d.errorf(n, key, "must be at most %d (a day), got %d", maxMillis, i)
		return 0
	}
	return time.Duration(i) * time.Millisecond
}

// duration decodes a positive Go duration such as 60s or 1m30s.
func (d *decoder) duration(n *yaml.Node, key string) time.Duration {
	if !d.scalar(n, key, "a duration like 60s") {
		return 0
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, key, "want a duration like 60s or 2m, got %s", describe(n))
		return 0
	}
	if v <= 0 {
		d.errorf(n, key, "must be positive, got %s", n.Value)
	}
	return v
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// keyNode returns the key node named k in mapping n, or n.
func keyNode(n *yaml.Node, k string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == k {
			return n.Content[i]
		}
	}
	return n
}

// valueNode returns the value of key k in mapping n, or nil.
func valueNode(n *yaml.Node, k string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == k {
			return n.Content[i+1]
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
