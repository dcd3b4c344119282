package synthetic

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseAppliesDefaults(t *testing.T) {
	s, err := Parse([]byte(`
defaults: {max_tokens: 8, temperature: 0}
cases:
  - name: chat
    messages: [{role: user, content: "Say hello"}]
  - name: text-stream
    prompt: "Once"
    stream: true
    body: {seed: 7}
  - name: stream-no-done
    prompt: "Twice"
    stream: true
    path: /v2/completions
    expect: {done: false, max_ttft_ms: 250, contains: [a, b]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Concurrency != 1 || s.Repeat != 1 || s.Timeout != DefaultTimeout {
		t.Errorf("concurrency, repeat, timeout = %d, %d, %s; want 1, 1, %s", s.Concurrency, s.Repeat, s.Timeout, DefaultTimeout)
	}
	if s.Defaults["max_tokens"] != 8 || s.Defaults["temperature"] != 0 {
		t.Errorf("defaults = %v", s.Defaults)
	}
	chat, text, noDone := s.Cases[0], s.Cases[1], s.Cases[2]
	if chat.Path != ChatPath || chat.Expect.Status != 200 || chat.Expect.Done || chat.Messages[0]["content"] != "Say hello" {
		t.Errorf("chat case = %+v", chat)
	}
	if text.Path != CompletionPath || !text.Stream || !text.Expect.Done || text.Body["seed"] != 7 {
		t.Errorf("streamed completion case = %+v", text)
	}
	if noDone.Path != "/v2/completions" || noDone.Expect.Done || noDone.Expect.MaxTTFT != 250*time.Millisecond ||
		strings.Join(noDone.Expect.Contains, ",") != "a,b" {
		t.Errorf("case with expectations = %+v", noDone)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	const chat = "\n    messages: [{role: user, content: hi}]"
	for _, tc := range []struct {
		name, yaml string
		key, msg   string // in the error
	}{
		{"empty file", "", "(file)", "empty"},
		{"not YAML", "cases: [", "(file)", "not valid YAML"},
		{"no cases", "repeat: 2", "cases", "missing"},
		{"empty cases", "cases: []", "cases", "at least one case"},
		{"unknown top-level key", "concurency: 2\ncases:\n  - name: a" + chat, "concurency", `unknown key "concurency"`},
		{"unknown expect key", "cases:\n  - name: a" + chat + "\n    expect: {contain: [x]}", "cases[0].expect.contain", "known here"},
		{"wrong type", "concurrency: many\ncases:\n  - name: a" + chat, "concurrency", "whole number"},
		{"zero repeat", "repeat: 0\ncases:\n  - name: a" + chat, "repeat", "at least 1"},
		{"duration without unit", "timeout: 10\ncases:\n  - name: a" + chat, "timeout", "duration"},
		{"defaults not a mapping", "defaults: [1]\ncases:\n  - name: a" + chat, "defaults", "mapping"},
		{"negative ms", "cases:\n  - name: a" + chat + "\n  - name: b" + chat + "\n  - name: c" + chat +
			"\n    expect: {max_ttft_ms: -5}", "cases[2].expect.max_ttft_ms", "must not be negative, got -5"},
		{"negative tokens", "cases:\n  - name: a" + chat + "\n    expect: {min_tokens: -1}", "cases[0].expect.min_tokens", "negative"},
		{"status out of range", "cases:\n  - name: a" + chat + "\n    expect: {status: 700}", "cases[0].expect.status", "HTTP status"},
		{"messages and prompt", "cases:\n  - name: a" + chat + "\n    prompt: hi", "cases[0]", "both messages and prompt"},
		{"neither messages nor prompt", "cases:\n  - name: a", "cases[0]", "needs messages"},
		{"missing name", "cases:\n  - prompt: hi", "cases[0].name", "missing"},
		{"duplicate name", "cases:\n  - name: a" + chat + "\n  - name: a" + chat, "cases[1].name", "duplicate"},
		{"empty messages", "cases:\n  - name: a\n    messages: []", "cases[0].messages", "empty"},
		{"message without role", "cases:\n  - name: a\n    messages: [{content: hi}]", "cases[0].messages[0].role", "missing"},
		{"message content a number", "cases:\n  - name: a\n    messages: [{role: user, content: {a: 1}}]", "cases[0].messages[0].content", "string or a list"},
		{"path without slash", "cases:\n  - name: a\n    path: v1/x" + chat, "cases[0].path", "starting with /"},
		{"stream in body", "cases:\n  - name: a" + chat + "\n    body: {stream: true}", "cases[0].body.stream", "per case"},
		{"prompt in defaults", "defaults: {prompt: x}\ncases:\n  - name: a" + chat, "defaults.prompt", "per case"},
		{"bad regex", "cases:\n  - name: a" + chat + "\n    expect: {regex: \"(unclosed\"}", "cases[0].expect.regex", "bad regex"},
		{"contains not a list", "cases:\n  - name: a" + chat + "\n    expect: {contains: hello}", "cases[0].expect.contains", "list of strings"},
		{"json not a bool", "cases:\n  - name: a" + chat + "\n    expect: {json: maybe}", "cases[0].expect.json", "true or false"},
		{"done without stream", "cases:\n  - name: a" + chat + "\n    expect: {done: true}", "cases[0].expect.done", "streamed cases"},
		{"not a number in body", "cases:\n  - name: a" + chat + "\n    body: {top_p: .nan}", "cases[0].body", "JSON"},
		{"duplicate expect key", "cases:\n  - name: a" + chat + "\n    expect:\n      contains: [must]\n      contains: [x]", "cases[0].expect.contains", "duplicate key"},
		{"duplicate cases key", "cases:\n  - name: a" + chat + "\ncases:\n  - name: b" + chat, "cases", "also on line 1"},
		{"ms past a day", "cases:\n  - name: a" + chat + "\n    expect: {max_total_ms: 10000000000000}", "cases[0].expect.max_total_ms", "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			for _, f := range se.Fields {
				if f.Key == tc.key && strings.Contains(f.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("error does not name %s with %q:\n%v", tc.key, tc.msg, err)
		})
	}
}

func TestLoadNamesFileAndLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "suite.yaml")
	body := "repeat: -1\ncases:\n  - name: a\n    prompt: hi\n    expect:\n      max_ttft_ms: -5\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var se *Error
	if !errors.As(err, &se) || se.File != path || len(se.Fields) != 2 {
		t.Fatalf("Load: %v; want an *Error for %s with 2 fields", err, path)
	}
	for _, want := range []string{"invalid suite " + path, "repeat (line 1)", "cases[0].expect.max_ttft_ms (line 6): must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestExampleSuitesParse(t *testing.T) {
	files, err := filepath.Glob("../../examples/suites/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example suites: %v", err)
	}
	for _, f := range files {
		if s, err := Load(f); err != nil {
			t.Error(err)
		} else if s.File != f {
			t.Errorf("File = %q, want %q", s.File, f)
		}
	}
}

// FuzzParse checks that Parse never panics and that what it accepts is
// runnable.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../examples/suites/*.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("cases:\n  - name: a\n    prompt: hi\n    expect: {regex: x, max_ttft_ms: 1}"))
	f.Add([]byte("a: &x [1]\ncases: *x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if len(s.Cases) == 0 || s.Concurrency < 1 || s.Repeat < 1 || s.Timeout <= 0 {
			t.Fatalf("accepted an unrunnable suite: %+v", s)
		}
		for _, c := range s.Cases {
			if c.Name == "" || !strings.HasPrefix(c.Path, "/") || c.Expect.Status < 100 {
				t.Fatalf("accepted a bad case: %+v", c)
			}
		}
	})
}
