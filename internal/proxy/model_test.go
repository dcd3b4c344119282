package proxy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestScanModel(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		notObj   bool
		found    bool
		isString bool
		value    string // decoded, when isString
		raw      string // in[valStart:valEnd], when found
		empty    bool
	}{
		{name: "present", in: `{"model":"m-1","n":1}`, found: true, isString: true, value: "m-1", raw: `"m-1"`},
		{name: "last member", in: `{"n":1,"model":"m-1"}`, found: true, isString: true, value: "m-1", raw: `"m-1"`},
		{name: "absent", in: `{"n":1,"messages":[]}`},
		{name: "null", in: `{"model":null}`, found: true, raw: "null"},
		{name: "number model", in: `{"model":42}`, found: true, raw: "42"},
		{name: "bool model", in: `{"model":true}`, found: true, raw: "true"},
		{name: "object model", in: `{"model":{"id":"m"}}`, found: true, raw: `{"id":"m"}`},
		{name: "array model", in: `{"model":["m"]}`, found: true, raw: `["m"]`},
		{name: "duplicate last wins", in: `{"model":"a","x":1,"model":"b"}`, found: true, isString: true, value: "b", raw: `"b"`},
		{name: "duplicate last is null", in: `{"model":"a","model":null}`, found: true, raw: "null"},
		{name: "escaped key", in: `{"mod\u0065l":"m-1"}`, found: true, isString: true, value: "m-1", raw: `"m-1"`},
		{name: "key with escaped quote is not model", in: `{"model\"":"m-1"}`},
		{name: "key prefix is not model", in: `{"models":"m-1","mode":"x"}`},
		{name: "case matters", in: `{"Model":"m-1"}`},
		{name: "nested model untouched", in: `{"messages":[{"role":"user","model":"inner"}],"meta":{"model":"x"}}`},
		{name: "nested then top-level", in: `{"messages":[{"model":"inner"}],"model":"outer"}`, found: true, isString: true, value: "outer", raw: `"outer"`},
		{name: "brackets inside strings", in: `{"s":"}]{[\"","model":"m"}`, found: true, isString: true, value: "m", raw: `"m"`},
		{name: "deep nesting", in: `{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"model":"m"}`, found: true, isString: true, value: "m", raw: `"m"`},
		{name: "whitespace everywhere", in: " \t\r\n{ \n\"model\" \t:\r\n \"m-1\" \n, \"n\" : 1 }\n ", found: true, isString: true, value: "m-1", raw: `"m-1"`},
		{name: "empty object", in: `{}`, empty: true},
		{name: "empty object with whitespace", in: " { \n } ", empty: true},
		{name: "unicode model name", in: `{"model":"模型-ü-🚀"}`, found: true, isString: true, value: "模型-ü-🚀", raw: `"模型-ü-🚀"`},
		{name: "model with escapes", in: `{"model":"a\"b\\c\u00e9\n"}`, found: true, isString: true, value: "a\"b\\c\u00e9\n", raw: `"a\"b\\c\u00e9\n"`},
		{name: "top-level array", in: `[]`, notObj: true},
		{name: "top-level string", in: `"str"`, notObj: true},
		{name: "top-level number", in: `1`, notObj: true},
		{name: "empty input", in: ``, notObj: true},
		{name: "only whitespace", in: "  \n", notObj: true},
		{name: "garbage", in: `model=m-1`, notObj: true},
		{name: "truncated after brace", in: `{`, notObj: true},
		{name: "truncated in key", in: `{"mod`, notObj: true},
		{name: "truncated after colon", in: `{"model":`, notObj: true},
		{name: "truncated in value", in: `{"model":"m-1`, notObj: true},
		{name: "truncated before close", in: `{"model":"m-1"`, notObj: true},
		{name: "truncated nested", in: `{"a":[{"b":1}`, notObj: true},
		{name: "trailing garbage", in: `{"model":"m"}x`, notObj: true},
		{name: "two objects", in: `{}{}`, notObj: true},
		{name: "trailing comma", in: `{"model":"m",}`, notObj: true},
		{name: "missing colon", in: `{"model" "m"}`, notObj: true},
		{name: "unquoted key", in: `{model:"m"}`, notObj: true},
		{name: "missing value", in: `{"model":,"a":1}`, notObj: true},
		{name: "mismatched brackets", in: `{"a":[}],"model":"m"}`, notObj: true},
		{name: "bad escape in model", in: `{"model":"\x"}`, notObj: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			f, err := scanModel(b)
			if tt.notObj {
				if err != errNotObject {
					t.Fatalf("scanModel(%s) = %+v, %v; want errNotObject", tt.in, f, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("scanModel(%s): %v", tt.in, err)
			}
			if f.found != tt.found || f.isString != tt.isString || f.model() != tt.value || f.empty != tt.empty {
				t.Errorf("scanModel(%s) = found %v string %v value %q empty %v; want %v %v %q %v",
					tt.in, f.found, f.isString, f.model(), f.empty, tt.found, tt.isString, tt.value, tt.empty)
			}
			if raw := string(b[f.valStart:f.valEnd]); raw != tt.raw {
				t.Errorf("value span %q, want %q", raw, tt.raw)
			}
			if b[f.objStart-1] != '{' {
				t.Errorf("objStart %d is not just after the brace", f.objStart)
			}
		})
	}
}

const (
	clientName = "chat"
	poolModel  = "org/m-1.5"
)

func TestRewriteModel(t *testing.T) {
	pm, _ := json.Marshal(poolModel)
	tests := []struct {
		name  string
		in    string
		want  string // expected output when ok; "=" means the input itself
		other string // the name reported when !ok
		notOK bool
	}{
		{name: "client name", in: `{"model":"chat","stream":true}`, want: `{"model":"org/m-1.5","stream":true}`},
		{name: "client name escaped", in: `{"model":"ch\u0061t"}`, want: `{"model":"org/m-1.5"}`},
		{name: "client name under escaped key", in: `{"mod\u0065l":"chat"}`, want: `{"mod\u0065l":"org/m-1.5"}`},
		{name: "client name with whitespace", in: "{ \"model\" : \"chat\" }", want: "{ \"model\" : \"org/m-1.5\" }"},
		// Python's json.loads reads bytes after a byte order mark, as
		// vLLM reads a body (a regression: the alias went through).
		{name: "client name after a byte order mark", in: "\ufeff{\"model\":\"chat\"}", want: "\ufeff{\"model\":\"org/m-1.5\"}"},
		{name: "missing after a byte order mark", in: "\ufeff {}", want: "\ufeff {\"model\":\"org/m-1.5\"}"},
		{name: "a byte order mark twice left to the backend", in: "\ufeff\ufeff{\"model\":\"chat\"}", want: "="},
		{name: "pool id unchanged", in: `{"model":"org/m-1.5","n":2}`, want: "="},
		{name: "missing filled in", in: `{"n":2}`, want: `{"model":"org/m-1.5","n":2}`},
		{name: "missing with nested model", in: `{"messages":[{"model":"chat"}]}`, want: `{"model":"org/m-1.5","messages":[{"model":"chat"}]}`},
		{name: "missing in empty object", in: `{}`, want: `{"model":"org/m-1.5"}`},
		{name: "missing in spaced empty object", in: "{\n}", want: "{\"model\":\"org/m-1.5\"\n}"},
		{name: "null filled in", in: `{"model":null,"n":2}`, want: `{"model":"org/m-1.5","n":2}`},
		{name: "duplicate, last is client", in: `{"model":"x","model":"chat"}`, want: `{"model":"x","model":"org/m-1.5"}`},
		{name: "duplicate, last is null", in: `{"model":"chat","model":null}`, want: `{"model":"chat","model":"org/m-1.5"}`},
		{name: "number left to the backend", in: `{"model":7}`, want: "="},
		{name: "object left to the backend", in: `{"model":{"id":"chat"}}`, want: "="},
		{name: "not an object left to the backend", in: `["chat"]`, want: "="},
		{name: "truncated left to the backend", in: `{"model":"chat"`, want: "="},
		{name: "other name", in: `{"model":"gpt-4o"}`, other: "gpt-4o", notOK: true},
		{name: "other name, unicode", in: `{"model":"mod\u00e8le"}`, other: "modèle", notOK: true},
		{name: "duplicate, last is other", in: `{"model":"chat","model":"gpt-4o"}`, other: "gpt-4o", notOK: true},
		// vLLM takes an empty name for the model it serves.
		{name: "empty name filled in", in: `{"model":"","n":2}`, want: `{"model":"org/m-1.5","n":2}`},
		{name: "case differs is other", in: `{"model":"Chat"}`, other: "Chat", notOK: true},
		// FuzzRewriteModel found it: the name's bytes are reported as sent.
		{name: "invalid UTF-8 is other", in: "{\"model\":\"\xf3\"}", other: "\xf3", notOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			out, other, ok := rewriteModel(in, clientName, poolModel, pm)
			if ok == tt.notOK {
				t.Fatalf("rewriteModel(%s) ok = %v, want %v (other %q)", tt.in, ok, !tt.notOK, other)
			}
			if !ok {
				if other != tt.other || out != nil {
					t.Errorf("rewriteModel(%s) = %q, %q; want nil, %q", tt.in, out, other, tt.other)
				}
			} else {
				want := tt.want
				if want == "=" {
					want = tt.in
					if len(out) == 0 || &out[0] != &in[0] {
						t.Errorf("rewriteModel(%s) copied the body; want the input slice itself", tt.in)
					}
				}
				if string(out) != want || other != "" {
					t.Errorf("rewriteModel(%s) = %s, %q; want %s", tt.in, out, other, want)
				}
			}
			checkRewrite(t, in, out, other, ok, clientName, poolModel)
		})
	}
}

// checkRewrite asserts what rewriteModel promises for a valid JSON object
// in, judged by encoding/json (which, like the scanner and vLLM, lets the
// last duplicate key win): everything but "model" decodes the same, and
// "model" became the pool's id unless it was left to the backend.
func checkRewrite(t *testing.T, in, out []byte, other string, ok bool, client, pool string) {
	t.Helper()
	if !json.Valid(in) || !bytes.HasPrefix(bytes.TrimLeft(in, " \t\r\n"), []byte("{")) {
		return
	}
	before := decodeObject(t, in)
	model, hasModel := before["model"]
	name, isString := model.(string)
	if !ok {
		// other is the model as sent, which the refusal quotes (as JSON,
		// so each byte of invalid UTF-8 becomes U+FFFD). encoding/json
		// decodes it the same way: {"model":"\xf3"} is "\ufffd" here,
		// but it is not a configured name (those are valid UTF-8), even
		// one that contains U+FFFD; the replica would refuse it too.
		if !isString || other == client || other == pool || string([]rune(other)) != name {
			t.Fatalf("rewriteModel(%s) refused with %q, but the model is %#v", in, other, model)
		}
		return
	}
	if isString && name != client && name != pool && name != "" {
		t.Fatalf("rewriteModel(%s) accepted model %q (client %q, pool %q)", in, name, client, pool)
	}
	if !json.Valid(out) {
		t.Fatalf("rewriteModel(%s) = %s: not valid JSON", in, out)
	}
	after := decodeObject(t, out)
	switch {
	case hasModel && model != nil && !isString:
		// A model that is neither a string nor null is the backend's to reject.
		if !bytes.Equal(out, in) {
			t.Fatalf("rewriteModel(%s) = %s: changed a non-string model", in, out)
		}
	case after["model"] != pool:
		t.Fatalf("rewriteModel(%s) = %s: model %#v, want %q", in, out, after["model"], pool)
	}
	delete(before, "model")
	delete(after, "model")
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("rewriteModel(%s) = %s: changed more than the model", in, out)
	}
}

func decodeObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // valid JSON numbers such as 1e999 overflow float64
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func FuzzRewriteModel(f *testing.F) {
	for _, s := range []string{
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"org/m-1.5"}`,
		`{"model":null}`, `{"model":1}`, `{}`, ` { } `, `{"n":[1,{"a":"}"}]}`,
		`{"model":"a","model":"chat"}`, `{"mod\u0065l":"ch\u0061t"}`, `{"model":"gpt-4o"}`,
		`[]`, `"str"`, `{"model":"chat"`, `{"a":1e999}`,
	} {
		f.Add([]byte(s), clientName, poolModel)
	}
	f.Add([]byte(`{"model":"x"}`), "x", "x")
	f.Add([]byte(`{"model":"<&>"}`), "<&>", "a\"\\\u2028b")
	f.Fuzz(func(t *testing.T, body []byte, client, pool string) {
		// The proxy only rewrites when a client-facing name is configured;
		// config values are valid UTF-8 (json.Marshal would alter others).
		if client == "" || !utf8.ValidString(client) || !utf8.ValidString(pool) {
			t.Skip()
		}
		pm, err := json.Marshal(pool)
		if err != nil {
			t.Fatal(err)
		}
		in := bytes.Clone(body)
		out, other, ok := rewriteModel(body, client, pool, pm)
		if !bytes.Equal(body, in) {
			t.Fatalf("rewriteModel modified its input: %q became %q", in, body)
		}
		checkRewrite(t, body, out, other, ok, client, pool)
	})
}

// chatRequest is a typical ~300-byte chat completion request.
var chatRequest = []byte(`{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."},` +
	`{"role":"user","content":"What is a blue-green deployment, and why would I use one for an LLM API?"}],` +
	`"temperature":0.7,"max_tokens":512,"stream":true,"stream_options":{"include_usage":true}}`)

func BenchmarkRewriteModel(b *testing.B) {
	pm, _ := json.Marshal(poolModel)
	cases := []struct {
		name string
		body []byte
	}{
		{"client name", chatRequest},
		{"pool id", bytes.Replace(chatRequest, []byte(`"chat"`), []byte(`"org/m-1.5"`), 1)},
		{"missing", bytes.Replace(chatRequest, []byte(`"model":"chat",`), nil, 1)},
		{"8 KiB prompt", bytes.Replace(chatRequest, []byte("What is"), bytes.Repeat([]byte("What is "), 1024), 1)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, _, ok := rewriteModel(c.body, clientName, poolModel, pm); !ok {
					b.Fatal("not ok")
				}
			}
		})
	}
}

func TestForModel(t *testing.T) {
	tests := []struct {
		body, want string
		det        bool
	}{
		{`{"model":"llama","temperature":0}`, `{"model":"v2","temperature":0}`, true},
		{`{"model":"llama","temperature":0.0}`, `{"model":"v2","temperature":0.0}`, true},
		{`{"model":"llama","temperature":0.7}`, `{"model":"v2","temperature":0.7}`, false},
		{`{"model":"llama","temperature":-0}`, `{"model":"v2","temperature":-0}`, true},
		{`{"model":"llama","temperature":0e5}`, `{"model":"v2","temperature":0e5}`, true},
		{`{"model":"llama","temperature":1e-400}`, `{"model":"v2","temperature":1e-400}`, true},
		{`{"model":"llama","temperature":"0"}`, `{"model":"v2","temperature":"0"}`, false},
		{`{"model":"llama","temperature":null}`, `{"model":"v2","temperature":null}`, false},
		{`{"model":"llama","temperature":0,"temperature":1.0}`, `{"model":"v2","temperature":0,"temperature":1.0}`, false},
		{`{"model":"llama","temperature":1.0,"temperature":0}`, `{"model":"v2","temperature":1.0,"temperature":0}`, true},
		{`{"model":"llama","seed":1,"seed":null}`, `{"model":"v2","seed":1,"seed":null}`, false},
		{`{"model":"llama","seed":42}`, `{"model":"v2","seed":42}`, true},
		{`{"model":"llama","seed":null}`, `{"model":"v2","seed":null}`, false},
		{`{"messages":[{"temperature":0}]}`, `{"model":"v2","messages":[{"temperature":0}]}`, false},
		{`{"\u0074emperature":0, "model" : null}`, `{"\u0074emperature":0, "model" : "v2"}`, true},
		{`{}`, `{"model":"v2"}`, false},
		// Strings past stringEnd's first 16 bytes are searched quote to
		// quote: escaped quotes and backslash runs before them.
		{`{"messages":[{"content":"a prompt longer than sixteen bytes, \"quoted\" and \\"}],"model":"llama","temperature":0.0}`,
			`{"messages":[{"content":"a prompt longer than sixteen bytes, \"quoted\" and \\"}],"model":"v2","temperature":0.0}`, true},
		{`{"messages":["a prompt longer than sixteen bytes \\\"]\\\\","model":"x"],"seed":1}`,
			`{"model":"v2","messages":["a prompt longer than sixteen bytes \\\"]\\\\","model":"x"],"seed":1}`, true},
	}
	for _, tt := range tests {
		out, det, err := ForModel([]byte(tt.body), []byte(`"v2"`))
		if err != nil || det != tt.det || string(out) != tt.want {
			t.Errorf("%s: got %s det %v err %v, want %s det %v", tt.body, out, det, err, tt.want, tt.det)
		}
		if Deterministic([]byte(tt.body)) != tt.det {
			t.Errorf("%s: Deterministic disagrees with ForModel", tt.body)
		}
	}
	for _, bad := range []string{`not json`, `[1,2]`, `{"model":"x"`, ``} {
		if _, _, err := ForModel([]byte(bad), []byte(`"v2"`)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAnswerScanner(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		stream        bool
		tokens        int
		streamErr, ok bool
	}{
		{"json usage", `{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":7}}`, false, 7, false, false},
		{"stream events", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n", true, 2, false, true},
		{"stream error", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n", true, 1, true, true},
		{"stream cut", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", true, 1, false, false},
	}
	for _, tt := range tests {
		n, se, done := scanWhole([]byte(tt.body), tt.stream)
		if n != tt.tokens || se != tt.streamErr || done != tt.ok {
			t.Errorf("%s: tokens %d streamError %v done %v, want %d %v %v", tt.name, n, se, done, tt.tokens, tt.streamErr, tt.ok)
		}
	}
}

// TestScanModelAllocates: a scan allocates nothing (the json.Unmarshal
// for an escaped value used to move the whole modelField to the heap on
// every scan; the model's name was a string of its own), nor does a
// rewrite into storage the connection loop pools.
func TestScanModelAllocates(t *testing.T) {
	body := []byte(`{"model":"llm","messages":[{"role":"user","content":"hi"}],"temperature":0.7}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = scanModel(body) }); n > 0 {
		t.Errorf("%v allocations per scan, want 0", n)
	}
	pm := []byte(`"org/m-1.5"`)
	n := testing.AllocsPerRun(100, func() {
		bm := bodyModel{pooled: true}
		if out, _, ok := bm.rewrite(body, "llm", "org/m-1.5", pm); !ok || bm.out == nil || !bytes.Contains(out, pm) {
			t.Fatalf("rewrite = %s, %v (pooled storage %v)", out, ok, bm.out != nil)
		}
		putRewriteBuf(bm.out)
	})
	if n > 0 {
		t.Errorf("%v allocations per pooled rewrite, want 0", n)
	}
	buf := make([]byte, len(body), len(body)+rewriteRoom)
	n = testing.AllocsPerRun(100, func() {
		copy(buf, body)
		bm := bodyModel{inPlace: true, pooled: true}
		if out, _, ok := bm.rewrite(buf, "llm", "org/m-1.5", pm); !ok || bm.out != nil || &out[0] != &buf[0] || !bytes.Contains(out, pm) {
			t.Fatalf("rewrite = %s, %v (pooled storage %v)", out, ok, bm.out != nil)
		}
	})
	if n > 0 {
		t.Errorf("%v allocations per rewrite in place, want 0", n)
	}
}

// TestRewriteModelInPlace: a rewrite in the body's own storage gives the
// bytes a rewrite into new storage gives, for a model name longer,
// shorter or as long as the client's, a model added to an empty object
// or one with members, and takes other storage when the room past the
// body is too small.
func TestRewriteModelInPlace(t *testing.T) {
	for _, body := range []string{
		`{"model":"llm","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[],"model":"llm"}`,
		`{"model":null,"n":1}`, `{"n":1}`, `{}`, ` { "model" : "llm" } `,
		`{"model":"a-much-longer-client-facing-model-name","n":1}`,
	} {
		for _, pool := range []string{"m", "llm", "org/m-1.5", "a-much-longer-model-id-than-the-client-sends-by-far"} {
			pm, _ := json.Marshal(pool)
			want, _, wok := rewriteModel([]byte(body), "llm", pool, pm)
			for _, room := range []int{0, 8, rewriteRoom} {
				buf := make([]byte, len(body), len(body)+room)
				copy(buf, body)
				bm := bodyModel{inPlace: true}
				got, _, ok := bm.rewrite(buf, "llm", pool, pm)
				if ok != wok || string(got) != string(want) {
					t.Errorf("%s to %s, room %d: %s %v, want %s %v", body, pool, room, got, ok, want, wok)
				}
			}
		}
	}
}
