package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
)

// modelField is where a JSON object body names its model.
type modelField struct {
	// objStart is the offset just after the object's opening brace.
	objStart int
	// empty reports an object with no members at all.
	empty bool
	// found reports a top-level "model" member; when false, valStart and
	// valEnd are zero.
	found bool
	// isString reports that the member's value is a JSON string (null and
	// other types are not).
	isString bool
	// valStart and valEnd delimit the member's value, quotes included.
	valStart, valEnd int
	// value is the decoded string value when isString: the body's own
	// bytes when it has no escape (valid while the body is), so that a
	// scan allocates nothing. model returns it as a string.
	value []byte
	// deterministic reports a top-level temperature of 0 or a non-null
	// seed: the answer's text is reproducible.
	deterministic bool
}

// model is the member's string value (isString), a copy.
func (f *modelField) model() string { return string(f.value) }

var errNotObject = errors.New("body is not a JSON object")

// scanModel finds the top-level "model" member of a JSON object without
// decoding anything else: it skips over nested values by counting brackets
// outside strings. When "model" appears twice the last one wins, as in the
// Python JSON parser vLLM uses. It returns errNotObject for anything that
// is not a well-formed object at the top level.
func scanModel(b []byte) (modelField, error) {
	var f modelField
	var greedy, seeded bool // a repeated key: the last one counts
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return f, errNotObject
	}
	i++
	f.objStart = i
	i = skipWS(b, i)
	if i < len(b) && b[i] == '}' {
		f.empty = true
		if skipWS(b, i+1) != len(b) {
			return f, errNotObject
		}
		return f, nil
	}
	for {
		i = skipWS(b, i)
		if i >= len(b) || b[i] != '"' {
			return f, errNotObject
		}
		ks := i
		ke, esc, ok := scanString(b, i)
		if !ok {
			return f, errNotObject
		}
		key := b[ks+1 : ke-1]
		if esc {
			if k, err := decodeString(b[ks:ke]); err == nil {
				key = []byte(k)
			}
		}
		isModel := string(key) == "model"
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return f, errNotObject
		}
		i = skipWS(b, i+1)
		vs := i
		ve, ok := skipValue(b, i)
		if !ok {
			return f, errNotObject
		}
		switch string(key) {
		case "temperature":
			greedy = isZeroNumber(b[vs:ve])
		case "seed":
			seeded = string(b[vs:ve]) != "null"
		}
		if isModel {
			f.found, f.valStart, f.valEnd = true, vs, ve
			f.isString = b[vs] == '"'
			f.value = nil
			if f.isString {
				if _, esc, _ := scanString(b, vs); !esc {
					f.value = b[vs+1 : ve-1]
				} else if v, err := decodeString(b[vs:ve]); err == nil {
					f.value = []byte(v)
				} else {
					return f, errNotObject
				}
			}
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return f, errNotObject
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			if skipWS(b, i+1) != len(b) {
				return f, errNotObject
			}
			f.deterministic = greedy || seeded
			return f, nil
		default:
			return f, errNotObject
		}
	}
}

// decodeString decodes the JSON string s, quotes included. A function of
// its own: the pointer json.Unmarshal takes moves its target to the heap,
// which in scanModel was the whole modelField, on every scan.
func decodeString(s []byte) (string, error) {
	var v string
	err := json.Unmarshal(s, &v)
	return v, err
}

// isZeroNumber reports whether v is a JSON number equal to zero (0, -0,
// 0.0, 0e5 and the like).
func isZeroNumber(v []byte) bool {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return false
	}
	// A plain decimal (temperature 0.7: no exponent, which could make a
	// tiny number zero) with a non-zero digit is not zero: no need to
	// parse it.
	if plainDecimal(v) && bytes.ContainsAny(v, "123456789") {
		return false
	}
	t, err := strconv.ParseFloat(string(v), 64)
	return err == nil && t == 0
}

// plainDecimal reports whether v holds only digits, a point and a minus
// sign: a number without an exponent.
func plainDecimal(v []byte) bool {
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the offset after the string starting at b[i] == '"',
// whether it contains escapes, and whether it is terminated.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, true
		}
	}
	return 0, false, false
}

// stringEnd returns the offset after the string starting at b[i] == '"'
// and whether it is terminated, like scanString without telling escapes.
// Short strings (keys, roles) end within a few bytes of a plain loop;
// long ones (prompts) are searched from quote to quote with
// bytes.IndexByte (vectorised), counting the backslashes before each
// quote: an odd number escapes it.
func stringEnd(b []byte, i int) (int, bool) {
	j := i + 1
	for n := 0; n < 16 && j < len(b); n, j = n+1, j+1 {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	for j < len(b) {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		n := 0
		for q-n-1 > i && b[q-n-1] == '\\' {
			n++
		}
		if n%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
	return 0, false
}

// jsonStop marks the bytes skipValue looks at inside an array or object;
// it passes over every other byte.
var jsonStop = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}

// skipValue returns the offset after the JSON value starting at b[i]. It
// checks bracket balance and string termination, not full JSON grammar:
// the backend validates the body; the gateway only needs to find "model".
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		var buf [32]byte
		stack := buf[:0]
		for j := i; j < len(b); j++ {
			c := b[j]
			if !jsonStop[c] {
				continue
			}
			switch c {
			case '"':
				end, ok := stringEnd(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				stack = append(stack, c)
			case '}', ']':
				if len(stack) == 0 {
					return 0, false
				}
				open := stack[len(stack)-1]
				if (c == '}') != (open == '{') {
					return 0, false
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j, j > i
			case '"', '{', '[', ':':
				return 0, false
			}
			j++
		}
		return j, j > i
	}
}

// rewriteModel applies the model-name rule to a JSON body: a missing or
// null model, or the client-facing name, becomes the pool's model id; the
// pool's own id passes as is. It returns the body to send (b itself when
// unchanged) and, for any other name, that name with ok false.
func rewriteModel(b []byte, clientName string, poolModel string, poolModelJSON []byte) (out []byte, other string, ok bool) {
	var m bodyModel
	return m.rewrite(b, clientName, poolModel, poolModelJSON)
}

// rewrite is rewriteModel with b's scan shared (b: the body as it
// arrived).
func (m *bodyModel) rewrite(b []byte, clientName string, poolModel string, poolModelJSON []byte) (out []byte, other string, ok bool) {
	f, err := m.scan(b)
	if err != nil {
		return b, "", true // not an object: the backend answers it
	}
	switch {
	case f.found && f.isString && string(f.value) == poolModel:
		return b, "", true
	case f.found && f.isString && string(f.value) == clientName:
		return m.setModel(b, f, poolModelJSON), "", true
	case f.found && f.isString:
		return nil, f.model(), false
	case f.found && string(b[f.valStart:f.valEnd]) != "null":
		return b, "", true // another type: leave it to the backend
	default: // missing or null
		return m.setModel(b, f, poolModelJSON), "", true
	}
}

// setModel is setModel building the new body in m.out when the caller
// gave one (see bodyModel), which keeps it for the next user.
func (m *bodyModel) setModel(b []byte, f modelField, modelJSON []byte) []byte {
	if m.out == nil {
		return setModel(nil, b, f, modelJSON)
	}
	*m.out = setModel((*m.out)[:0], b, f, modelJSON)
	m.used = true
	return *m.out
}

// setModel appends to dst (nil: a new slice of the right size) b with
// the model member of f set to modelJSON, or added first when b has none.
func setModel(dst, b []byte, f modelField, modelJSON []byte) []byte {
	if f.found {
		out := dst
		if out == nil {
			out = make([]byte, 0, len(b)-(f.valEnd-f.valStart)+len(modelJSON))
		}
		out = append(out, b[:f.valStart]...)
		out = append(out, modelJSON...)
		return append(out, b[f.valEnd:]...)
	}
	out := dst
	if out == nil {
		out = make([]byte, 0, len(b)+len(modelJSON)+10)
	}
	out = append(out, b[:f.objStart]...)
	out = append(out, `"model":`...)
	out = append(out, modelJSON...)
	if !f.empty {
		out = append(out, ',')
	}
	return append(out, b[f.objStart:]...)
}

// bodyModel is scanModel's result for one request's body, scanned once
// and shared by every step that needs it: client auth's model check, the
// model-name rule and the shadow copy's determinism (three scans of the
// same body before). The zero value has not scanned yet.
type bodyModel struct {
	f       modelField
	err     error
	scanned bool
	// out, when not nil, is storage for a rewritten body (see
	// rewriteBufs), and used reports that the rewrite built one there.
	out  *[]byte
	used bool
}

// rewriteBufs hold the connection loop's rewritten bodies (model_name),
// one per request while it is served: the rewrite allocates nothing.
var rewriteBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// maxKeptRewrite is the largest rewrite buffer that goes back to
// rewriteBufs.
const maxKeptRewrite = 64 << 10

// putRewriteBuf gives a buffer taken from rewriteBufs back.
func putRewriteBuf(b *[]byte) {
	if cap(*b) <= maxKeptRewrite {
		*b = (*b)[:0]
		rewriteBufs.Put(b)
	}
}

// scan returns scanModel(b) of the request's body as it arrived: b on
// the first call; later calls return that result whatever b (the body
// the model-name rule rewrote has the same members but the model).
func (m *bodyModel) scan(b []byte) (modelField, error) {
	if !m.scanned {
		m.f, m.err = scanModel(b)
		m.scanned = true
	}
	return m.f, m.err
}

// deterministic is Deterministic for the request's body.
func (m *bodyModel) deterministic(b []byte) bool {
	f, err := m.scan(b)
	return err == nil && f.deterministic
}

// ForModel returns the JSON object body b with its top-level model set to
// modelJSON (a JSON string, quotes included), the way the shadow copy of a
// request reaches the candidate, and reports whether the request is
// deterministic: temperature 0 or a seed. Other members are left byte for
// byte. It fails for a body that is not a JSON object.
func ForModel(b, modelJSON []byte) (out []byte, deterministic bool, err error) {
	f, err := scanModel(b)
	if err != nil {
		return nil, false, err
	}
	return setModel(nil, b, f, modelJSON), f.deterministic, nil
}

// Deterministic reports whether the JSON request body b asks for a
// reproducible answer: temperature 0 or a seed.
func Deterministic(b []byte) bool {
	f, err := scanModel(b)
	return err == nil && f.deterministic
}
