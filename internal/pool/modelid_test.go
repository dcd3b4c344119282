package pool

import (
	"strings"
	"testing"
)

// TestCheckModelID: control characters and non-UTF-8 bytes are refused
// (a regression: a deployment's model id with a terminal escape was
// stored and printed raw by the demo's banner), and so is a leading "-"
// (a regression: `cutover deploy --model --trust-remote-code` without
// --replica had an agent run `vllm serve --trust-remote-code`); ordinary
// ids, paths (vLLM's default served name) and spaces pass.
func TestCheckModelID(t *testing.T) {
	tests := []struct {
		id, want string
	}{
		{"llama-3.1-8b-instruct", ""},
		{"meta-llama/Llama-3.1-8B-Instruct", ""},
		{"/models/llama 3", ""},
		{"Qwen2.5-7B-Instruct-AWQ:latest", ""},
		{"modèle", ""},
		{"llama\n", "control character"},
		{"x\x00y", "control character"},
		{"evil\x1b]0;pwned\x07", "control character"},
		{"a\u0085b", "control character"},
		{"bad\xffutf8", "not UTF-8"},
		{"--trust-remote-code", "option"},
		{"-m", "option"},
		{"llama-3-", ""},
	}
	for _, tt := range tests {
		err := CheckModelID(tt.id)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckModelID(%q) = %v, want ok", tt.id, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckModelID(%q) = %v, want an error saying %q", tt.id, err, tt.want)
		}
	}
}
