package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
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
//
// It runs once per request with model_name rewriting on, over every byte
// of the body: strings (most of a body) are searched eight bytes at a
// time (scanString, stringEnd), whitespace costs one comparison where
// there is none.
func scanModel(b []byte) (modelField, error) {
	var f modelField
	err := f.scan(b)
	return f, err
}

// scan is scanModel(b) into f (all of it set), which saves a copy of f
// for a caller that keeps it.
func (f *modelField) scan(b []byte) error {
	*f = modelField{}
	var greedy, seeded bool // a repeated key: the last one counts
	i := 0
	if len(b) >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf {
		i = 3 // a UTF-8 byte order mark, which Python's json.loads skips in bytes, as vLLM reads a body
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	i++
	f.objStart = i
	i = skipWS(b, i)
	if i < len(b) && b[i] == '}' {
		f.empty = true
		if skipWS(b, i+1) != len(b) {
			return errNotObject
		}
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			if i = skipWS(b, i); i >= len(b) || b[i] != '"' {
				return errNotObject
			}
		}
		ks := i
		ke := plainStringEnd(b, i)
		var key memberKey
		if ke > 0 {
			key = keyAt(b, ks, ke)
		} else {
			var esc, ok bool
			if ke, esc, ok = scanString(b, i); !ok {
				return errNotObject
			}
			key = keyAt(b, ks, ke)
			if esc {
				if k, err := decodeString(b[ks:ke]); err == nil {
					key = keyOf(k)
				}
			}
		}
		if i = ke; i >= len(b) || b[i] != ':' {
			if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
				return errNotObject
			}
		}
		vs := i + 1
		if vs >= len(b) || b[vs] <= ' ' {
			if vs = skipWS(b, vs); vs >= len(b) {
				return errNotObject
			}
		}
		if key == keyModel {
			f.found, f.valStart, f.value = true, vs, nil
			f.isString = b[vs] == '"'
			if !f.isString {
				var ok bool
				if f.valEnd, ok = skipValue(b, vs); !ok {
					return errNotObject
				}
			} else if ve := plainStringEnd(b, vs); ve > 0 {
				f.valEnd, f.value = ve, b[vs+1:ve-1]
			} else {
				ve, esc, ok := scanString(b, vs)
				if !ok {
					return errNotObject
				}
				f.valEnd = ve
				if !esc {
					f.value = b[vs+1 : ve-1]
				} else if v, err := decodeString(b[vs:ve]); err == nil {
					f.value = []byte(v)
				} else {
					return errNotObject
				}
			}
			i = f.valEnd
		} else {
			if c := b[vs]; c != '"' && c != '{' && c != '[' {
				// A number, true, false or null, as skipValue's own loop.
				if i = scalarEnd(b, vs); i <= vs {
					return errNotObject
				}
			} else if c != '"' {
				var ok bool
				if i, ok = skipValue(b, vs); !ok {
					return errNotObject
				}
			} else if i = plainStringEnd(b, vs); i < 0 {
				var ok bool
				if i, ok = stringEnd(b, vs); !ok {
					return errNotObject
				}
			}
			switch key {
			case keyTemperature:
				greedy = isZeroNumber(b[vs:i])
			case keySeed:
				seeded = string(b[vs:i]) != "null"
			}
		}
		if i >= len(b) || b[i] <= ' ' {
			if i = skipWS(b, i); i >= len(b) {
				return errNotObject
			}
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			if skipWS(b, i+1) != len(b) {
				return errNotObject
			}
			f.deterministic = greedy || seeded
			return nil
		default:
			return errNotObject
		}
	}
}

// memberKey tells the top-level members scanModel looks at.
type memberKey uint8

const (
	keyOther memberKey = iota
	keyModel
	keyTemperature
	keySeed
)

// keyAt is keyOf the key b[ks:ke], quotes included, without escapes:
// its length first, so that most keys cost one comparison.
func keyAt(b []byte, ks, ke int) memberKey {
	switch ke - ks - 2 {
	case len("model"):
		if string(b[ks+1:ke-1]) == "model" {
			return keyModel
		}
	case len("seed"):
		if string(b[ks+1:ke-1]) == "seed" {
			return keySeed
		}
	case len("temperature"):
		if string(b[ks+1:ke-1]) == "temperature" {
			return keyTemperature
		}
	}
	return keyOther
}

// keyOf is the memberKey of the decoded key k.
func keyOf(k string) memberKey {
	switch k {
	case "model":
		return keyModel
	case "seed":
		return keySeed
	case "temperature":
		return keyTemperature
	}
	return keyOther
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

// skipWS returns the offset of the first byte from b[i] on that is not
// JSON whitespace. Every whitespace byte is at most ' ': one comparison
// for a body without any.
func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// quoteOrBackslash has the high bit set in the lowest byte of x that is
// '"' or '\\' (if any; bytes above it may be marked wrongly, by a
// borrow), and no bit set when x has neither.
func quoteOrBackslash(x uint64) uint64 {
	q := x ^ (lo8 * '"')
	s := x ^ (lo8 * '\\')
	return ((q-lo8)&^q | (s-lo8)&^s) & hi8
}

// plainStringEnd returns the offset after the string starting at
// b[i] == '"' when its closing quote comes before any backslash and at
// least eight bytes before the end of b, and -1 otherwise (scanString and
// stringEnd then tell): the short strings of a request (keys, roles,
// names) cost a word or two and no call.
func plainStringEnd(b []byte, i int) int {
	for j := i + 1; j <= len(b)-8; j += 8 {
		if m := quoteOrBackslash(binary.LittleEndian.Uint64(b[j:])); m != 0 {
			if j += bits.TrailingZeros64(m) >> 3; b[j] == '"' {
				return j + 1
			}
			break
		}
	}
	return -1
}

// scanString returns the offset after the string starting at b[i] == '"',
// whether it contains escapes, and whether it is terminated. It looks at
// eight bytes at a time for the next quote or backslash.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	j := i + 1
	for {
		for j+8 <= len(b) {
			if m := quoteOrBackslash(binary.LittleEndian.Uint64(b[j:])); m != 0 {
				j += bits.TrailingZeros64(m) / 8
				break
			}
			j += 8
		}
		for j < len(b) && b[j] != '"' && b[j] != '\\' {
			j++
		}
		if j >= len(b) {
			return 0, false, false
		}
		if b[j] == '"' {
			return j + 1, escaped, true
		}
		escaped = true
		j += 2 // the backslash and the byte it escapes
	}
}

// stringEnd returns the offset after the string starting at b[i] == '"'
// and whether it is terminated, like scanString without telling escapes.
// Short strings (keys, roles) end within the first 32 bytes, searched
// eight at a time as scanString does; long ones (prompts) are searched
// from quote to quote with bytes.IndexByte (vectorised), counting the
// backslashes before each quote: an odd number escapes it.
func stringEnd(b []byte, i int) (int, bool) {
	j := i + 1
	for n := 0; n < 4 && j+8 <= len(b); n++ {
		m := quoteOrBackslash(binary.LittleEndian.Uint64(b[j:]))
		if m == 0 {
			j += 8
			continue
		}
		j += bits.TrailingZeros64(m) / 8
		if b[j] == '"' {
			return j + 1, true
		}
		j += 2 // the backslash and the byte it escapes
	}
	// j is not inside an escape: a quote from j on ends the string unless
	// an odd run of backslashes comes right before it.
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
				end := plainStringEnd(b, j)
				if end < 0 {
					var ok bool
					if end, ok = stringEnd(b, j); !ok {
						return 0, false
					}
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
		j := scalarEnd(b, i)
		return j, j > i
	}
}

// scalarStop tells the bytes that end a number, true, false or null (1)
// and those that cannot be in one or follow it (2).
var scalarStop = [256]uint8{
	',': 1, '}': 1, ']': 1, ' ': 1, '\t': 1, '\n': 1, '\r': 1,
	'"': 2, '{': 2, '[': 2, ':': 2,
}

// scalarEnd returns the offset after the number or literal starting at
// b[i]: the first byte that ends it, or the end of b; -1 when a byte that
// cannot be in one or follow it comes first.
func scalarEnd(b []byte, i int) int {
	j := i
	for j < len(b) && scalarStop[b[j]] == 0 {
		j++
	}
	if j < len(b) && scalarStop[b[j]] == 2 {
		return -1
	}
	return j
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
	if !m.scanned {
		m.err = m.f.scan(b)
		m.scanned = true
	}
	if m.err != nil {
		// Not an object: a form's model field (scanForm), else the
		// backend answers it.
		return m.rewriteForm(b, clientName, poolModel)
	}
	f := &m.f
	switch {
	case f.found && f.isString && string(f.value) == poolModel:
		return b, "", true
	case f.found && f.isString && (string(f.value) == clientName || len(f.value) == 0):
		// "" too: vLLM takes an empty name for the model it serves.
		return m.setModel(b, f, poolModelJSON), "", true
	case f.found && f.isString:
		return nil, f.model(), false
	case f.found && string(b[f.valStart:f.valEnd]) != "null":
		return b, "", true // another type: leave it to the backend
	default: // missing or null
		return m.setModel(b, f, poolModelJSON), "", true
	}
}

// setModel is setModel building the new body in b's own storage when
// the caller lets it (inPlace) and it has room, else in storage from
// rewriteBufs when the caller takes that (pooled: m.out, which the
// caller gives back), else in a new slice.
func (m *bodyModel) setModel(b []byte, f *modelField, modelJSON []byte) []byte {
	if m.inPlace {
		if out, ok := setModelInPlace(b, f, modelJSON); ok {
			m.f.value = nil // its bytes were b's
			return out
		}
	}
	if !m.pooled {
		return setModel(nil, b, f, modelJSON)
	}
	m.out = rewriteBufs.Get().(*[]byte)
	*m.out = setModel((*m.out)[:0], b, f, modelJSON)
	return *m.out
}

// setModelInPlace is setModel(nil, b, f, modelJSON) built in b's own
// array, the bytes after the model's value moved: false, and b
// untouched, when the new body would not fit in cap(b).
func setModelInPlace(b []byte, f *modelField, modelJSON []byte) ([]byte, bool) {
	if f.found {
		n := len(b) + len(modelJSON) - (f.valEnd - f.valStart)
		if n > cap(b) {
			return nil, false
		}
		out := b[:n]
		copy(out[f.valStart+len(modelJSON):], b[f.valEnd:])
		copy(out[f.valStart:], modelJSON)
		return out, true
	}
	ins := len(`"model":`) + len(modelJSON)
	if !f.empty {
		ins++ // the comma before the members that were there
	}
	n := len(b) + ins
	if n > cap(b) {
		return nil, false
	}
	out := b[:n]
	copy(out[f.objStart+ins:], b[f.objStart:])
	i := f.objStart + copy(out[f.objStart:], `"model":`)
	i += copy(out[i:], modelJSON)
	if !f.empty {
		out[i] = ','
	}
	return out, true
}

// setModel appends to dst (nil: a new slice of the right size) b with
// the model member of f set to modelJSON, or added first when b has none.
func setModel(dst, b []byte, f *modelField, modelJSON []byte) []byte {
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
	// inPlace lets a rewrite build the new body in the body's own
	// storage (the connection's buffer, with room for a longer model
	// name: see Handler.bufferBody) when it fits: no copy of the whole
	// body, no other storage.
	inPlace bool
	// pooled lets a rewrite that does not fit in place build the new
	// body in storage from rewriteBufs; out is that storage once taken,
	// which the caller gives back when the body is no longer used.
	pooled bool
	out    *[]byte
	// form is the model field of a body that is a multipart form, not a
	// JSON object (see scanForm); zero when not read.
	form formModel
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
		m.err = m.f.scan(b)
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
	return setModel(nil, b, &f, modelJSON), f.deterministic, nil
}

// Deterministic reports whether the JSON request body b asks for a
// reproducible answer: temperature 0 or a seed.
func Deterministic(b []byte) bool {
	f, err := scanModel(b)
	return err == nil && f.deterministic
}
