package proxy

import (
	"bytes"
	"strings"
	"testing"
)

// The scanner of model.go as it was before it looked at eight bytes at a
// time (round 9 of docs/benchmarks.md): the reference the tests compare
// the fast one with.

// scanModel finds the top-level "model" member of a JSON object without
// decoding anything else: it skips over nested values by counting brackets
// outside strings. When "model" appears twice the last one wins, as in the
// Python JSON parser vLLM uses. It returns errNotObject for anything that
// is not a well-formed object at the top level.
func scanModelRef(b []byte) (modelField, error) {
	var f modelField
	var greedy, seeded bool // a repeated key: the last one counts
	i := 0
	if bytes.HasPrefix(b, []byte("\ufeff")) {
		i = len("\ufeff")
	}
	i = skipWSRef(b, i)
	if i >= len(b) || b[i] != '{' {
		return f, errNotObject
	}
	i++
	f.objStart = i
	i = skipWSRef(b, i)
	if i < len(b) && b[i] == '}' {
		f.empty = true
		if skipWSRef(b, i+1) != len(b) {
			return f, errNotObject
		}
		return f, nil
	}
	for {
		i = skipWSRef(b, i)
		if i >= len(b) || b[i] != '"' {
			return f, errNotObject
		}
		ks := i
		ke, esc, ok := scanStringRef(b, i)
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
		i = skipWSRef(b, ke)
		if i >= len(b) || b[i] != ':' {
			return f, errNotObject
		}
		i = skipWSRef(b, i+1)
		vs := i
		ve, ok := skipValueRef(b, i)
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
				if _, esc, _ := scanStringRef(b, vs); !esc {
					f.value = b[vs+1 : ve-1]
				} else if v, err := decodeString(b[vs:ve]); err == nil {
					f.value = []byte(v)
				} else {
					return f, errNotObject
				}
			}
		}
		i = skipWSRef(b, ve)
		if i >= len(b) {
			return f, errNotObject
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			if skipWSRef(b, i+1) != len(b) {
				return f, errNotObject
			}
			f.deterministic = greedy || seeded
			return f, nil
		default:
			return f, errNotObject
		}
	}
}

func skipWSRef(b []byte, i int) int {
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
func scanStringRef(b []byte, i int) (end int, escaped, ok bool) {
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
func stringEndRef(b []byte, i int) (int, bool) {
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

// skipValue returns the offset after the JSON value starting at b[i]. It
// checks bracket balance and string termination, not full JSON grammar:
// the backend validates the body; the gateway only needs to find "model".
func skipValueRef(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return stringEndRef(b, i)
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
				end, ok := stringEndRef(b, j)
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

// scanCases are bodies for the scanners' comparison: the shapes of
// TestScanModel, strings around the eight-byte words and the 32 bytes
// stringEnd searches word by word, escapes and backslash runs at every
// offset, bytes with the high bit set.
func scanCases() []string {
	cases := []string{
		``, `{}`, ` { } `, `{"model":"m"}`, `{"model":null}`, `{"model":42}`, `{"model":[1,{"a":"]"}]}`,
		`{"model":"a","model":"b"}`, `{"mod\u0065l":"m"}`, `{"model\"":"m"}`, `{"model":"\x"}`, `{"model":"a\"b"}`,
		`{"model":"llm","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":false}`,
		`{"temperature":0,"seed":null,"model":"x"}`, `{"seed":1}`, `{"temperature":0.0e1}`,
		`{"a":[}],"model":"m"}`, `{"model":"m",}`, `{"model" "m"}`, `{model:"m"}`, `{"model":,"a":1}`,
		"{\"model\":\"\xf3\"}", "{\"\xff\xfe\":\"\x80\x80\x80\x80\x80\x80\x80\x80\x80\",\"model\":\"\xc3\xa9\"}",
		`{"a":"` + strings.Repeat(`\\`, 40) + `","model":"m"}`, `{"a":"` + strings.Repeat(`\\`, 41) + `"}`,
		`{"a":["` + strings.Repeat(`\"`, 30) + `"],"model":"m"}`,
	}
	for n := 0; n <= 40; n++ {
		for pos := 0; pos <= n; pos++ {
			for _, ins := range []string{`\"`, `\\`, `"`, `\`, "\x22\x5c", "#\x5d"} {
				s := strings.Repeat("x", pos) + ins + strings.Repeat("y", n-pos)
				cases = append(cases,
					`{"model":"`+s+`","n":1}`,
					`{"k`+s+`":1,"model":"m"}`,
					`{"messages":[{"content":"`+s+`"}],"model":"m"}`,
					`{"content":"`+s+`"}`)
			}
		}
	}
	return cases
}

// checkLikeReference fails t when scanModel and scanModelRef disagree
// on b.
func checkLikeReference(t *testing.T, b []byte) {
	t.Helper()
	got, gerr := scanModel(b)
	want, werr := scanModelRef(b)
	if gerr != werr {
		t.Fatalf("scanModel(%q): error %v, reference %v", b, gerr, werr)
	}
	if gerr != nil {
		return
	}
	if got.objStart != want.objStart || got.empty != want.empty || got.found != want.found || got.isString != want.isString ||
		got.valStart != want.valStart || got.valEnd != want.valEnd || !bytes.Equal(got.value, want.value) ||
		(got.value == nil) != (want.value == nil) || got.deterministic != want.deterministic {
		t.Fatalf("scanModel(%q) = %+v, reference %+v", b, got, want)
	}
}

// TestScanModelLikeReference: the scanner that looks at eight bytes at a
// time finds what the byte-by-byte one found, errors included.
func TestScanModelLikeReference(t *testing.T) {
	for _, s := range scanCases() {
		checkLikeReference(t, []byte(s))
		// Cut at every length: unterminated strings and objects.
		for n := range len(s) {
			checkLikeReference(t, []byte(s[:n]))
		}
	}
}

// FuzzScanModel compares scanModel with the reference scanner.
func FuzzScanModel(f *testing.F) {
	for _, s := range scanCases()[:30] {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkLikeReference(t, b) })
}

// BenchmarkScanModel is the scan of the saturation scenario's body with
// model_name rewriting (clients send "llm"), and of a typical chat
// request.
func BenchmarkScanModel(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"bench", []byte(`{"model":"llm","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":false}`)},
		{"chat", chatRequest},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, err := scanModel(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"-ref", func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, err := scanModelRef(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
