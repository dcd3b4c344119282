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
		{"too long a model", `{"model":"` + strings.Repeat("x", 300) + `","data":[{"model":"b"}]}`, "b", -1},
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

// FuzzAnswerScan: cut in two anywhere, an answer scans as it does whole.
func FuzzAnswerScan(f *testing.F) {
	f.Add([]byte(`{"model":"m1","usage":{"prompt_tokens":12,"completion_tokens":3}}`), uint16(20))
	f.Add([]byte("data: {\"model\": \"x\"}\n\ndata: {\"usage\":{\"prompt_tokens\":7}}\n\n"), uint16(3))
	f.Add([]byte(`{"model":"`+strings.Repeat("y", 250)+`","x":{"model":"z"},"usage":{"prompt_tokens":3}}`), uint16(200))
	f.Fuzz(func(t *testing.T, answer []byte, cut uint16) {
		whole := answerScan{input: -1}
		whole.scan(answer)
		whole.scan([]byte("\n")) // what follows lets a number at the very end count
		parts := answerScan{input: -1}
		i := int(cut) % (len(answer) + 1)
		parts.scan(answer[:i])
		parts.scan(answer[i:])
		parts.scan([]byte("\n"))
		if whole.model != parts.model || whole.input != parts.input {
			t.Fatalf("cut at %d: model %q input %d, whole: %q %d", i, parts.model, parts.input, whole.model, whole.input)
		}
	})
}
