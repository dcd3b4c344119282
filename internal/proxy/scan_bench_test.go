package proxy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkBodyScanner is the observation's work on each relayed read: a
// stream's events, one per read as a replica sends them, and a small
// non-streamed answer.
func BenchmarkBodyScanner(b *testing.B) {
	var events [][]byte
	events = append(events, []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"))
	for i := range 16 {
		events = append(events, fmt.Appendf(nil, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok%d "},"logprobs":null,"finish_reason":null}]}`+"\n\n", i))
	}
	events = append(events, []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"total_tokens":21,"completion_tokens":16}}`+"\n\n"), []byte("data: [DONE]\n\n"))
	answer := []byte(`{"id":"x","object":"chat.completion","model":"model-v1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	b.Run("stream", func(b *testing.B) {
		for range b.N {
			s := newBodyScanner()
			for _, e := range events {
				s.scan(e, true)
			}
			if n, _ := s.tokens(); n != 16 || !s.done {
				b.Fatalf("tokens %d, done %v", n, s.done)
			}
		}
	})
	b.Run("answer", func(b *testing.B) {
		for range b.N {
			s := newBodyScanner()
			s.scan(answer, false)
			if n, _ := s.tokens(); n != 1 {
				b.Fatalf("tokens %d", n)
			}
		}
	})
}

// TestLastUsage: lastUsage and lastUsageBack find what bytes.LastIndex
// finds.
func TestLastUsage(t *testing.T) {
	for _, s := range []string{
		``, `_`, `"completion_tokens":`, `x"completion_tokens":1`, `"completion_tokens"`,
		`{"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`,
		`"completion_tokens":1,"completion_tokens":2`, `completion_tokens":`, `"completion__tokens":`,
		`__"completion_tokens":_"completion_tokens":__`, `"finish_reason":null,"completion_tokens`,
	} {
		want := bytes.LastIndex([]byte(s), patUsage)
		if got := lastUsage([]byte(s)); got != want {
			t.Errorf("lastUsage(%q) = %d, want %d", s, got, want)
		}
		if got := lastUsageBack([]byte(s)); got != want {
			t.Errorf("lastUsageBack(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestScanCountsLikeCount: one scan of a whole stream counts events,
// [DONE] and error events as bytes.Count and bytes.Contains do.
func TestScanCountsLikeCount(t *testing.T) {
	for _, body := range []string{
		"", "data: ", " data: x", "data: data: data: ", "xdata: {\"a\": 1}\n\ndata: [DONE]\n\n",
		"data: {\"content\":\"say data: twice\"}\n\ndata: {\"error\":{}}\n\ndata: [DONE]\n\ndata: [DONE]\n\n",
		"   data:  data:data: {\"error\" data: {\"error\"", "data:x data : data: [DON",
	} {
		b := []byte(body)
		s := newBodyScanner()
		s.firstDone = true
		s.scan(b, true)
		want := bytes.Count(b, patData) - bytes.Count(b, patError)
		if bytes.Contains(b, patDone) {
			want--
		}
		if s.events != want || s.done != bytes.Contains(b, patDone) || s.streamError != bytes.Contains(b, patError) {
			t.Errorf("scan(%q): events %d, done %v, error %v; want %d, %v, %v", body, s.events, s.done, s.streamError,
				want, bytes.Contains(b, patDone), bytes.Contains(b, patError))
		}
	}
}

// TestLastUsageBackLikeLastIndex: lastUsageBack's skipping search finds
// what bytes.LastIndex finds, in bodies made of the pattern's own pieces
// (every byte the skip table knows), partial and whole matches, at every
// position near the start and the end.
func TestLastUsageBackLikeLastIndex(t *testing.T) {
	pieces := []string{`"completion_tokens":`, `"completion`, `_tokens":`, `tokens`, `"`, `:`, `_`, `x`, `s":`, `c`, `o`, `"c`, `ns":1,`, `}`}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		b := []byte(sb.String())
		if got, want := lastUsageBack(b), bytes.LastIndex(b, patUsage); got != want {
			t.Fatalf("lastUsageBack(%q) = %d, want %d", b, got, want)
		}
	}
}
