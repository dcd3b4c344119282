package mockllm

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCompletions covers both endpoints, streamed and not: response shapes,
// the answer's text, max_tokens, finish_reason and usage.
func TestCompletions(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	tests := []struct {
		name       string
		path       string
		body       func(stream string) string
		prompt     string
		wantTokens int
		wantFinish string
		idPrefix   string
		object     string
	}{
		{
			name: "chat", path: "/v1/chat/completions", prompt: "hello there",
			body:       func(s string) string { return chatBody(testModel, "hello there", s) },
			wantTokens: DefaultTokens, wantFinish: "stop", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "chat max_tokens", path: "/v1/chat/completions", prompt: "hello there",
			body:       func(s string) string { return chatBody(testModel, "hello there", `,"max_tokens":5`+s) },
			wantTokens: 5, wantFinish: "length", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "chat max_completion_tokens wins", path: "/v1/chat/completions", prompt: "hi",
			body:       func(s string) string { return chatBody(testModel, "hi", `,"max_tokens":9,"max_completion_tokens":3`+s) },
			wantTokens: 3, wantFinish: "length", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "chat max_completion_tokens 0 falls back to max_tokens", path: "/v1/chat/completions", prompt: "hi",
			body:       func(s string) string { return chatBody(testModel, "hi", `,"max_tokens":2,"max_completion_tokens":0`+s) },
			wantTokens: 2, wantFinish: "length", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "chat with empty stream_options", path: "/v1/chat/completions", prompt: "hi",
			body:       func(s string) string { return chatBody(testModel, "hi", `,"max_tokens":4,"stream_options":{}`+s) },
			wantTokens: 4, wantFinish: "length", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "chat max_tokens above Tokens", path: "/v1/chat/completions", prompt: "hi",
			body:       func(s string) string { return chatBody(testModel, "hi", `,"max_tokens":100`+s) },
			wantTokens: DefaultTokens, wantFinish: "stop", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "chat several messages and content parts", path: "/v1/chat/completions", prompt: "be brief\nwhat is up?",
			body: func(s string) string {
				return `{"model":"` + testModel + `","messages":[{"role":"system","content":"be brief"},` +
					`{"role":"user","content":[{"type":"text","text":"what "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"is up?"}]}]` + s + `}`
			},
			wantTokens: DefaultTokens, wantFinish: "stop", idPrefix: "chatcmpl-", object: "chat.completion",
		},
		{
			name: "text", path: "/v1/completions", prompt: "Once upon a time",
			body:       func(s string) string { return textBody(testModel, "Once upon a time", s) },
			wantTokens: DefaultTokens, wantFinish: "stop", idPrefix: "cmpl-", object: "text_completion",
		},
		{
			name: "text max_tokens", path: "/v1/completions", prompt: "Once upon a time",
			body:       func(s string) string { return textBody(testModel, "Once upon a time", `,"max_tokens":1`+s) },
			wantTokens: 1, wantFinish: "length", idPrefix: "cmpl-", object: "text_completion",
		},
		{
			name: "text prompt array", path: "/v1/completions", prompt: "one prompt",
			body:       func(s string) string { return `{"model":"` + testModel + `","prompt":["one prompt"]` + s + `}` },
			wantTokens: DefaultTokens, wantFinish: "stop", idPrefix: "cmpl-", object: "text_completion",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Answer(testModel, tt.prompt, tt.wantTokens)
			wantUsage := usage{PromptTokens: PromptTokens(tt.prompt), CompletionTokens: tt.wantTokens,
				TotalTokens: PromptTokens(tt.prompt) + tt.wantTokens}

			// Not streamed.
			status, hdr, body := do(t, http.MethodPost, ts.URL+tt.path, tt.body(""))
			if status != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q, body %s", status, hdr.Get("Content-Type"), body)
			}
			var c completion
			if err := json.Unmarshal([]byte(body), &c); err != nil {
				t.Fatalf("decoding %s: %v", body, err)
			}
			if !strings.HasPrefix(c.ID, tt.idPrefix) || c.Object != tt.object || c.Model != testModel || c.Created == 0 {
				t.Errorf("id %q object %q model %q created %d; want id %s..., object %s", c.ID, c.Object, c.Model, c.Created, tt.idPrefix, tt.object)
			}
			if got := c.text(t); got != want {
				t.Errorf("text = %q, want %q", got, want)
			}
			if got := len(strings.Fields(c.text(t))); got != tt.wantTokens {
				t.Errorf("%d words, want %d", got, tt.wantTokens)
			}
			if f := c.Choices[0].FinishReason; f == nil || *f != tt.wantFinish {
				t.Errorf("finish_reason = %v, want %s", f, tt.wantFinish)
			}
			if c.Usage == nil || *c.Usage != wantUsage {
				t.Errorf("usage = %+v, want %+v", c.Usage, wantUsage)
			}

			// Streamed, with a usage chunk.
			status, hdr, body = do(t, http.MethodPost, ts.URL+tt.path, tt.body(`,"stream":true,"stream_options":{"include_usage":true}`))
			if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("stream: status %d, Content-Type %q", status, hdr.Get("Content-Type"))
			}
			events := sseEvents(t, body)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event %q, want [DONE]", events[len(events)-1])
			}
			chunks := decodeChunks(t, events[:len(events)-1])
			last := chunks[len(chunks)-1]
			if len(last.Choices) != 0 || last.Usage == nil || *last.Usage != wantUsage {
				t.Errorf("usage chunk = %+v, want no choices and usage %+v", last, wantUsage)
			}
			chunks = chunks[:len(chunks)-1]
			chat := tt.object == "chat.completion"
			if chat {
				first := chunks[0].Choices[0]
				if first.Delta == nil || first.Delta.Role == nil || *first.Delta.Role != "assistant" ||
					first.Delta.Content == nil || *first.Delta.Content != "" {
					t.Errorf("first chunk should carry only role assistant, got %+v", first.Delta)
				}
				chunks = chunks[1:]
			}
			if len(chunks) != tt.wantTokens {
				t.Fatalf("%d token chunks, want %d", len(chunks), tt.wantTokens)
			}
			var sb strings.Builder
			for i, ch := range chunks {
				if ch.ID != chunks[0].ID || ch.Model != testModel || ch.Usage != nil || len(ch.Choices) != 1 {
					t.Errorf("chunk %d: %+v", i, ch)
				}
				wantObject := tt.object
				if chat {
					wantObject += ".chunk"
				}
				if ch.Object != wantObject || !strings.HasPrefix(ch.ID, tt.idPrefix) {
					t.Errorf("chunk %d: object %q id %q", i, ch.Object, ch.ID)
				}
				choice := ch.Choices[0]
				piece := choice.Text
				if chat {
					piece = choice.Delta.Content
				}
				if piece == nil || len(strings.Fields(*piece)) != 1 {
					t.Fatalf("chunk %d should carry exactly one token: %+v", i, choice)
				}
				sb.WriteString(*piece)
				wantFinish := ""
				if i == len(chunks)-1 {
					wantFinish = tt.wantFinish
				}
				if got := deref(choice.FinishReason); got != wantFinish {
					t.Errorf("chunk %d finish_reason %q, want %q", i, got, wantFinish)
				}
			}
			if sb.String() != want {
				t.Errorf("streamed text = %q, want %q", sb.String(), want)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// decodeChunks parses stream events as completion chunks.
func decodeChunks(t *testing.T, events []string) []completion {
	t.Helper()
	out := make([]completion, len(events))
	for i, ev := range events {
		if err := json.Unmarshal([]byte(ev), &out[i]); err != nil {
			t.Fatalf("event %d %q: %v", i, ev, err)
		}
	}
	return out
}

// TestStreamWithoutUsage checks that no usage chunk is sent unless asked for.
func TestStreamWithoutUsage(t *testing.T) {
	_, ts := newTestServer(t, Config{Tokens: 3})
	_, _, body := do(t, http.MethodPost, ts.URL+"/v1/completions", textBody(testModel, "x", `,"stream":true`))
	events := sseEvents(t, body)
	if len(events) != 4 || events[3] != "[DONE]" || strings.Contains(body, `"usage"`) {
		t.Errorf("want 3 token chunks and [DONE] without usage, got %q", events)
	}
}

// TestAnswersAreDeterministic checks that the text depends on the model and
// the prompt and on nothing else.
func TestAnswersAreDeterministic(t *testing.T) {
	_, a := newTestServer(t, Config{Model: "model-a"})
	_, b := newTestServer(t, Config{Model: "model-b"})
	ask := func(ts string, model, prompt string) string {
		status, _, body := do(t, http.MethodPost, ts+"/v1/chat/completions", chatBody(model, prompt, ""))
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var c completion
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			t.Fatal(err)
		}
		return c.text(t)
	}
	first := ask(a.URL, "model-a", "same prompt")
	tests := []struct {
		name  string
		got   string
		equal bool
	}{
		{"same model, same prompt", ask(a.URL, "model-a", "same prompt"), true},
		{"other model, same prompt", ask(b.URL, "model-b", "same prompt"), false},
		{"same model, other prompt", ask(a.URL, "model-a", "other prompt"), false},
	}
	for _, tt := range tests {
		if (tt.got == first) != tt.equal {
			t.Errorf("%s: %q vs %q, want equal=%v", tt.name, tt.got, first, tt.equal)
		}
	}
}

// TestRequestErrors checks vLLM's status codes and error shape.
func TestRequestErrors(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxModelLen: 20})
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantType, wantParam      string
		wantMessage              string // substring
	}{
		{"unknown model", "POST", "/v1/chat/completions", chatBody("other", "hi", ""),
			404, "NotFoundError", "model", "The model `other` does not exist."},
		{"missing model", "POST", "/v1/completions", `{"prompt":"hi"}`,
			404, "NotFoundError", "model", "The model `` does not exist."},
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model":`,
			400, "BadRequestError", "", "JSON decode error"},
		{"wrong field type", "POST", "/v1/chat/completions", `{"model":"test-model","messages":"hi"}`,
			400, "BadRequestError", "", "JSON decode error"},
		{"empty messages", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[]}`,
			400, "BadRequestError", "messages", "messages"},
		{"missing prompt", "POST", "/v1/completions", `{"model":"test-model"}`,
			400, "BadRequestError", "prompt", "prompt is required"},
		{"batched prompt", "POST", "/v1/completions", `{"model":"test-model","prompt":["a","b"]}`,
			400, "BadRequestError", "", "prompt must be"},
		{"max_tokens zero", "POST", "/v1/completions", textBody(testModel, "hi", `,"max_tokens":0`),
			400, "BadRequestError", "max_tokens", "max_tokens must be at least 1, got 0."},
		{"context too long", "POST", "/v1/completions", textBody(testModel, "a b c", `,"max_tokens":18`),
			400, "BadRequestError", "", "maximum context length is 20 tokens. However, you requested 21 tokens"},
		{"stream_options without stream", "POST", "/v1/chat/completions", chatBody(testModel, "hi", `,"stream_options":{"include_usage":true}`),
			400, "BadRequestError", "stream_options", "Stream options"},
		{"stream_options checked before the model", "POST", "/v1/chat/completions", chatBody("other", "hi", `,"stream_options":{"include_usage":true}`),
			400, "BadRequestError", "stream_options", "Stream options"},
		{"n zero", "POST", "/v1/chat/completions", chatBody(testModel, "hi", `,"n":0`),
			400, "BadRequestError", "n", "n must be at least 1, got 0."},
		{"n above one, not simulated", "POST", "/v1/chat/completions", chatBody(testModel, "hi", `,"n":3`),
			400, "BadRequestError", "n", "n=3 is not supported"},
		{"GET on chat", "GET", "/v1/chat/completions", "",
			405, "Method Not Allowed", "", "Method Not Allowed"},
		{"POST on models", "POST", "/v1/models", "",
			405, "Method Not Allowed", "", "Method Not Allowed"},
		{"unknown path", "GET", "/v1/embeddings", "",
			404, "Not Found", "", "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := do(t, tt.method, ts.URL+tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tt.wantStatus, body)
			}
			e := decodeError(t, body).Error
			if e.Type != tt.wantType || e.Code != tt.wantStatus || deref(e.Param) != tt.wantParam ||
				!strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("error %+v (param %q), want type %q param %q message ~%q",
					e, deref(e.Param), tt.wantType, tt.wantParam, tt.wantMessage)
			}
		})
	}
}

// TestContextLengthCapsTokens checks that an answer stops at MaxModelLen.
func TestContextLengthCapsTokens(t *testing.T) {
	_, ts := newTestServer(t, Config{Tokens: 16, MaxModelLen: 20})
	_, _, body := do(t, http.MethodPost, ts.URL+"/v1/completions", textBody(testModel, "one two three four five six seven", ""))
	var c completion
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	if c.Usage.CompletionTokens != 13 || deref(c.Choices[0].FinishReason) != "length" {
		t.Errorf("usage %+v finish %q, want 13 tokens and length", c.Usage, deref(c.Choices[0].FinishReason))
	}
}

// TestInjectedErrors checks ErrorRate and StreamErrorRate at 1, and that a
// seeded fractional rate gives the same faults on every run.
func TestInjectedErrors(t *testing.T) {
	t.Run("error rate 1", func(t *testing.T) {
		s, ts := newTestServer(t, Config{ErrorRate: 1})
		for _, body := range []string{chatBody(testModel, "hi", ""), chatBody(testModel, "hi", `,"stream":true`)} {
			status, _, resp := do(t, http.MethodPost, ts.URL+"/v1/chat/completions", body)
			if e := decodeError(t, resp).Error; status != 500 || e.Type != "InternalServerError" || e.Code != 500 {
				t.Errorf("status %d error %+v, want 500 InternalServerError", status, e)
			}
		}
		if st := s.Stats(); st.Failed != 2 || st.Requests != 2 || st.Succeeded != 0 {
			t.Errorf("stats %+v, want 2 requests, 2 failed", st)
		}
	})
	t.Run("stream error rate 1", func(t *testing.T) {
		s, ts := newTestServer(t, Config{StreamErrorRate: 1, Tokens: 6})
		status, _, body := do(t, http.MethodPost, ts.URL+"/v1/chat/completions", chatBody(testModel, "hi", `,"stream":true`))
		events := sseEvents(t, body)
		// role chunk, 3 tokens, error, [DONE]
		if status != http.StatusOK || len(events) != 6 || events[5] != "[DONE]" {
			t.Fatalf("status %d events %q", status, events)
		}
		if e := decodeError(t, events[4]).Error; e.Type != "InternalServerError" || e.Code != 500 {
			t.Errorf("in-stream error %+v", e)
		}
		decodeChunks(t, events[:4])
		// Non-streamed requests are not affected.
		if status, _, body := do(t, http.MethodPost, ts.URL+"/v1/chat/completions", chatBody(testModel, "hi", "")); status != 200 {
			t.Errorf("non-streamed: status %d: %s", status, body)
		}
		if st := s.Stats(); st.Failed != 1 || st.Succeeded != 1 {
			t.Errorf("stats %+v, want 1 failed, 1 succeeded", st)
		}
	})
	t.Run("seeded rate is reproducible", func(t *testing.T) {
		pattern := func() string {
			_, ts := newTestServer(t, Config{ErrorRate: 0.5, Seed: 42})
			var sb strings.Builder
			for range 40 {
				status, _, _ := do(t, http.MethodPost, ts.URL+"/v1/completions", textBody(testModel, "x", ""))
				sb.WriteByte("ok"[min(status/500, 1)])
			}
			return sb.String()
		}
		p1, p2 := pattern(), pattern()
		if p1 != p2 || !strings.Contains(p1, "o") || !strings.Contains(p1, "k") {
			t.Errorf("patterns %s and %s: want equal, with both outcomes", p1, p2)
		}
	})
}

// TestMediaType: like vLLM, a completion request whose body is not
// declared application/json is refused with a 400 (curl -d sends a form
// type); a charset parameter is fine.
func TestMediaType(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	for _, tc := range []struct {
		ct     string
		status int
	}{
		{"", 400}, {"application/x-www-form-urlencoded", 400}, {"text/plain", 400},
		{"application/json", 200}, {"Application/JSON; charset=utf-8", 200},
	} {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(chatBody(testModel, "hi", "")))
		if err != nil {
			t.Fatal(err)
		}
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.status == 400 && !strings.Contains(string(b), "Only 'application/json' is allowed")) {
			t.Errorf("Content-Type %q: %d %s, want %d", tc.ct, resp.StatusCode, b, tc.status)
		}
	}
}
