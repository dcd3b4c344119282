package proxy

import (
	"strings"
	"testing"
)

// TestAnswerScan: the span's scan finds the answer's first model and last
// prompt_tokens however the answer is cut into pieces, for a JSON answer
// and an SSE stream with usage in its last event.
func TestAnswerScan(t *testing.T) {
	long := strings.Repeat("m", 150)
	for _, tc := range []struct {
		name, answer, model string
		input               int
	}{
		{"json", `{"id":"x","object":"chat.completion","model":"llama-3.1-8b","choices":[{"message":{"content":"hi \"model\":\"no\""}}],"usage":{"prompt_tokens":17,"total_tokens":20,"completion_tokens":3,"prompt_tokens_details":null}}`, "llama-3.1-8b", 17},
		{"sse", "data: {\"id\":\"1\",\"model\":\"org/Model-v2\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n" +
			strings.Repeat("data: {\"id\":\"1\",\"model\":\"org/Model-v2\",\"choices\":[{\"delta\":{\"content\":\"tok \"}}]}\n\n", 20) +
			"data: {\"id\":\"1\",\"model\":\"org/Model-v2\",\"choices\":[],\"usage\":{\"prompt_tokens\":1234,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n", "org/Model-v2", 1234},
		{"long model", `{"model": "` + long + `","usage":{"prompt_tokens":5}}`, long, 5},
		{"no usage", `{"model":"a","choices":[]}`, "a", -1},
		{"not json", "Internal Server Error", "", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for size := 1; size <= len(tc.answer); size++ {
				a := answerScan{input: -1}
				for b := []byte(tc.answer); len(b) > 0; {
					n := min(size, len(b))
					a.scan(b[:n])
					b = b[n:]
				}
				if a.model != tc.model || a.input != tc.input {
					t.Fatalf("pieces of %d: model %q input %d, want %q %d", size, a.model, a.input, tc.model, tc.input)
				}
			}
		})
	}
}
