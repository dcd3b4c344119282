package proxy

import (
	"strings"
	"testing"
)

func TestBodyScanner(t *testing.T) {
	chunk := func(content string) string {
		return `data: {"choices":[{"index":0,"delta":{"content":"` + content + `"}}]}` + "\n\n"
	}
	role := `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n"
	usage := `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":17,"total_tokens":20}}` + "\n\n"
	done := "data: [DONE]\n\n"
	tests := []struct {
		name      string
		reads     []string
		stream    bool
		tokens    int
		fromUsage bool
		streamErr bool
	}{
		{"counted chunks", []string{role, chunk("a"), chunk("b"), chunk("c"), done}, true, 3, false, false},
		{"usage wins", []string{role, chunk("a"), usage, done}, true, 17, true, false},
		{"several events per read", []string{role + chunk("a") + chunk("b"), done}, true, 2, false, false},
		{"usage split across reads", []string{role, usage[:60], usage[60:], done}, true, 17, true, false},
		{"error inside the stream", []string{role, chunk("a"), `data: {"error":{"message":"boom","code":500}}` + "\n\n", done}, true, 1, false, true},
		{"error split across reads", []string{role, chunk("a"), `data: {"err`, `or":{"message":"boom"}}` + "\n\n", done}, true, 1, false, true},
		{"non-streamed usage", []string{`{"id":"x","usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}}`}, false, 5, true, false},
		{"non-streamed without usage", []string{`{"id":"x"}`}, false, 0, false, false},
		{"content mentioning data: is not an event", []string{`{"text":"data: data: "}`}, false, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newBodyScanner()
			for _, r := range tt.reads {
				s.scan([]byte(r), tt.stream)
			}
			n, fromUsage := s.tokens()
			if n != tt.tokens || fromUsage != tt.fromUsage || s.streamError != tt.streamErr {
				t.Fatalf("tokens %d (usage %v) streamError %v; want %d (%v) %v", n, fromUsage, s.streamError, tt.tokens, tt.fromUsage, tt.streamErr)
			}
		})
	}
}

func FuzzBodyScanner(f *testing.F) {
	f.Add(`data: {"usage":{"completion_tokens":12}}`+"\n\ndata: [DONE]\n\n", 7)
	f.Add(strings.Repeat("data: x\n\n", 10), 3)
	f.Fuzz(func(t *testing.T, body string, split int) {
		s := newBodyScanner()
		if split < 0 || split > len(body) {
			split = len(body) / 2
		}
		s.scan([]byte(body[:split]), true)
		s.scan([]byte(body[split:]), true)
		if n, _ := s.tokens(); n < 0 {
			t.Fatalf("negative tokens %d", n)
		}
	})
}

// TestScannerPatternsAcrossReads: an error event split between two reads
// is found even when the second read carries a usage object, and a split
// "data: [DONE]" or "data: " counts as in the whole body.
func TestScannerPatternsAcrossReads(t *testing.T) {
	s := newBodyScanner()
	s.scan([]byte(`data: {"choices":[{"delta":{"content":"a"}}],"usage":{"completion_tokens":1}}`+"\n\n"+`data: {"err`), true)
	s.scan([]byte(`or":{"message":"boom"}}`+"\n\n"+`data: {"choices":[],"usage":{"completion_tokens":1}}`+"\n\ndata: [DONE]\n\n"), true)
	if !s.streamError {
		t.Error("an error event split across reads, with usage after it, went unseen")
	}
	body := `data: {"choices":[{"delta":{"role":"assistant"}}]}` + "\n\n" + `data: {"choices":[{"delta":{"content":"a"}}]}` + "\n\n" + `data: {"choices":[{"delta":{"content":"b"}}]}` + "\n\ndata: [DONE]\n\n"
	whole, _, wholeDone := scanWhole([]byte(body), true)
	for cut := 1; cut < len(body); cut++ {
		a := NewAnswerScanner(true)
		_, _ = a.Write([]byte(body[:cut]))
		_, _ = a.Write([]byte(body[cut:]))
		if n, _, done := a.Result(); n != whole || done != wholeDone {
			t.Errorf("split at %d (%q|%q): %d tokens done %v, whole body %d tokens done %v", cut, body[max(0, cut-8):cut], body[cut:min(len(body), cut+8)], n, done, whole, wholeDone)
		}
	}
}

// scanWhole reads a whole answer with an AnswerScanner.
func scanWhole(b []byte, stream bool) (tokens int, streamError, done bool) {
	a := NewAnswerScanner(stream)
	_, _ = a.Write(b)
	return a.Result()
}
