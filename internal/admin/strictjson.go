package admin

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// checkStrict refuses what encoding/json would accept but change: a field
// name in another case than documented (encoding/json matches names
// case-insensitively), a field given twice (it keeps the last), bytes that
// are not UTF-8 and a UTF-16 surrogate escape without its pair (it puts
// U+FFFD in their place). t is the type raw decodes into; raw is one
// well-formed JSON value.
func checkStrict(raw []byte, t reflect.Type) error {
	if !utf8.Valid(raw) {
		return fmt.Errorf("not UTF-8")
	}
	if err := checkSurrogates(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return checkValue(dec, t, "")
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
)

// checkValue reads one value from dec and checks its objects' field names
// against t (nil: any value, where only duplicates are checked).
func checkValue(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t == rawMessageType || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil // its own decoding: only duplicates are checked
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			name := path + "." + key
			if path == "" {
				name = key
			}
			if seen[key] {
				return fmt.Errorf("field %q given twice", name)
			}
			seen[key] = true
			var ft reflect.Type
			switch {
			case t == nil:
			case t.Kind() == reflect.Map:
				ft = t.Elem()
			case t.Kind() == reflect.Struct:
				f, ok := fieldNamed(t, key)
				if !ok {
					if g, ok := fieldFolded(t, key); ok {
						return fmt.Errorf("unknown field %q: field names are case-sensitive, did you mean %q?", name, g)
					}
					// DisallowUnknownFields names it in the decode that follows.
				}
				ft = f
			}
			if err := checkValue(dec, ft, name); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// fieldNamed is the type of t's field that encoding/json names key exactly.
func fieldNamed(t reflect.Type, key string) (reflect.Type, bool) {
	for n, f := range jsonFields(t) {
		if n == key {
			return f.Type, true
		}
	}
	return nil, false
}

// fieldFolded is the JSON name of t's field that matches key in another case.
func fieldFolded(t reflect.Type, key string) (string, bool) {
	for n := range jsonFields(t) {
		if strings.EqualFold(n, key) {
			return n, true
		}
	}
	return "", false
}

// jsonFields yields t's fields by their JSON names as encoding/json sees
// them: exported, not tagged "-", and the fields of an untagged embedded
// struct in its place (a tagged one is a field of its own). Where two
// fields have one name both are yielded; the request types have none.
func jsonFields(t reflect.Type) iter.Seq2[string, reflect.StructField] {
	return func(yield func(string, reflect.StructField) bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case tag == "-":
			case f.Anonymous && name == "" && ft.Kind() == reflect.Struct:
				for n, g := range jsonFields(ft) {
					if !yield(n, g) {
						return
					}
				}
			case !f.IsExported():
			default:
				if name == "" {
					name = f.Name
				}
				if !yield(name, f) {
					return
				}
			}
		}
	}
}

// checkSurrogates refuses a \u escape of a UTF-16 surrogate that is not a
// high one followed by a low one.
func checkSurrogates(raw []byte) error {
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !in {
			in = c == '"'
			continue
		}
		switch c {
		case '"':
			in = false
		case '\\':
			i++
			if i >= len(raw) || raw[i] != 'u' {
				continue
			}
			r, ok := hex4(raw[i+1:])
			if !ok || !utf16.IsSurrogate(r) {
				i += 4
				continue
			}
			if len(raw) > i+6 && raw[i+5] == '\\' && raw[i+6] == 'u' {
				if lo, ok := hex4(raw[i+7:]); ok && utf16.DecodeRune(r, lo) != unicode.ReplacementChar {
					i += 10 // the pair: both escapes
					continue
				}
			}
			return fmt.Errorf("the escape \\u%04x is half of a UTF-16 surrogate pair, without the other half", r)
		}
	}
	return nil
}

// hex4 reads the four hexadecimal digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	var v [2]byte
	if len(b) < 4 {
		return 0, false
	}
	if _, err := hex.Decode(v[:], b[:4]); err != nil {
		return 0, false
	}
	return rune(v[0])<<8 | rune(v[1]), true
}
