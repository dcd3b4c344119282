package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// failingSuite has a case that passes and one that never can.
const failingSuite = `
repeat: 2
defaults: {max_tokens: 4}
cases:
  - name: answers
    messages: [{role: user, content: "Say hello"}]
    stream: true
  - name: wants-zebra
    prompt: "Name a striped animal"
    expect:
      contains: ["zebra"]
`

func writeSuite(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "suite.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTestCommand(t *testing.T) {
	urls := mockPool(t, "model-v1", 2)
	good := filepath.Join("..", "..", "examples", "suites", "smoke.yaml")
	failing := writeSuite(t, failingSuite)
	bad := writeSuite(t, "cases:\n  - name: a\n    prompt: hi\n    expect: {max_ttft_ms: -5}\n")
	target := []string{"--url", urls[0], "--url", urls[1], "--model", "model-v1"}
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     []string // each must appear
		stderr     []string
		jsonReport bool
	}{
		{name: "good suite passes", args: append([]string{"--suite", good}, target...), code: 0,
			stdout: []string{"CASE ", "chat-stream ", "unknown-model ", "10 passed, 0 failed (100.0% pass)"}},
		{name: "good suite as JSON", args: append([]string{"--suite", good, "--json"}, target...), code: 0, jsonReport: true,
			stdout: []string{`"ok": true`, `"passed": 10`}},
		{name: "failing suite", args: append([]string{"--suite", failing, "--repeat", "3"}, target...), code: 1,
			stdout: []string{"Failures:", "wants-zebra: 3 of 3 runs failed", `- text does not contain "zebra"`, "3 passed, 3 failed"},
			stderr: []string{"3 of 6 requests failed"}},
		{name: "failing suite as JSON", args: append([]string{"--suite", failing, "--json"}, target...), code: 1, jsonReport: true,
			stdout: []string{`"ok": false`, `"text does not contain \"zebra\""`}},
		{name: "bad suite file", args: append([]string{"--suite", bad}, target...), code: 2,
			stderr: []string{"invalid suite " + bad, "cases[0].expect.max_ttft_ms (line 4): must not be negative"}},
		{name: "missing suite file", args: append([]string{"--suite", "nope.yaml"}, target...), code: 2, stderr: []string{"nope.yaml"}},
		{name: "no url", args: []string{"--suite", good}, code: 2, stderr: []string{"--url is required"}},
		{name: "bad header", args: append([]string{"--suite", good, "--header", "nocolon"}, target...), code: 2,
			stderr: []string{`--header "nocolon"`}},
		{name: "zero concurrency", args: append([]string{"--suite", good, "--concurrency", "0"}, target...), code: 2,
			stderr: []string{"--concurrency 0: must be at least 1"}},
		{name: "bad url", args: []string{"--suite", good, "--url", "ftp://x"}, code: 2, stderr: []string{`--url "ftp://x"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, append([]string{"test"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if tc.jsonReport && !json.Valid([]byte(stdout)) {
				t.Errorf("stdout is not JSON:\n%s", stdout)
			}
		})
	}
}

// TestTestCommandClientModelAndHeaders runs a suite written for the
// gateway's client-facing name directly against a replica.
func TestTestCommandClientModelAndHeaders(t *testing.T) {
	m, err := mockllm.New(mockllm.Config{Model: "model-v2", Tokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var auth []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		m.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	suite := writeSuite(t, "defaults: {model: llama}\ncases:\n  - name: a\n    prompt: hi\n    expect: {model: model-v2}\n")
	code, stdout, stderr := runCLI(t, nil, "test", "--suite", suite, "--url", strings.TrimPrefix(s.URL, "http://"),
		"--model", "model-v2", "--client-model", "llama", "--header", "Authorization: Bearer secret")
	if code != 0 || !strings.Contains(stdout, "1 passed, 0 failed") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) != 1 || auth[0] != "Bearer secret" {
		t.Errorf("Authorization headers %q, want one Bearer secret", auth)
	}
}

// TestTestCommandAPIKeyFile: --api-key-file sends the file's key as a
// Bearer token, so a suite can run against a replica started with vLLM's
// --api-key (which answers 401 without it).
func TestTestCommandAPIKeyFile(t *testing.T) {
	m, err := mockllm.New(mockllm.Config{Model: "model-v2", Tokens: 4, APIKey: "replica-key"})
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(m)
	t.Cleanup(s.Close)
	suite := writeSuite(t, "cases:\n  - name: a\n    prompt: hi\n")
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("replica-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runCLI(t, nil, "test", "--suite", suite, "--url", s.URL, "--model", "model-v2"); code != 1 {
		t.Fatalf("without the key: exit %d, want 1\n%s", code, stdout)
	}
	if code, stdout, stderr := runCLI(t, nil, "test", "--suite", suite, "--url", s.URL, "--model", "model-v2", "--api-key-file", keyFile); code != 0 {
		t.Fatalf("with --api-key-file: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "test", "--suite", suite, "--url", s.URL, "--api-key-file", keyFile+".missing"); code != 2 || !strings.Contains(stderr, "--api-key-file") {
		t.Fatalf("missing key file: exit %d %s, want 2 naming the flag", code, stderr)
	}
}
