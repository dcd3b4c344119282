package synthetic

import (
	"strings"
	"testing"
	"time"
)

func TestReadStream(t *testing.T) {
	const (
		hi  = `{"model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}`
		you = `{"choices":[{"index":0,"text":" you"},{"index":1,"text":" other choice"}]}`
	)
	for _, tc := range []struct {
		name       string
		body       string
		text       string
		tokens     int
		done, sErr bool
		note       string
	}{
		{name: "chat deltas", body: "data: " + hi + "\n\ndata: " + you + "\n\ndata: [DONE]\n\n", text: "hi you", tokens: 2, done: true},
		{name: "CRLF, comments and other fields", body: ": ping\r\nevent: message\r\ndata:" + hi + "\r\n\r\ndata: [DONE]\r\n\r\n",
			text: "hi", tokens: 1, done: true},
		{name: "usage wins over chunks", body: "data: " + hi + "\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":9}}\n\ndata: [DONE]\n\n",
			text: "hi", tokens: 9, done: true},
		{name: "reasoning counts as tokens, not text",
			body: "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}\n\ndata: " + hi + "\n\n",
			text: "hi", tokens: 2},
		{name: "data split over lines", body: "data: {\"choices\":[{\"index\":0,\ndata: \"text\":\"a\"}]}\n\n", text: "a", tokens: 1},
		{name: "last event without a blank line", body: "data: " + hi + "\n\ndata: [DONE]", text: "hi", tokens: 1, done: true},
		{name: "nothing counts after [DONE]", body: "data: [DONE]\n\ndata: " + hi + "\n\n", done: true},
		{name: "error event", body: "data: " + hi + "\n\ndata: {\"error\":{\"message\":\"boom\",\"code\":500}}\n\ndata: [DONE]\n\n",
			text: "hi", tokens: 1, done: true, sErr: true},
		{name: "malformed events", body: "data: nope\n\ndata: {\n\n", note: `2 malformed stream event(s), the first: "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res Result
			notes, err := readStream(strings.NewReader(tc.body), time.Now(), &res)
			if err != nil {
				t.Fatal(err)
			}
			if res.Text != tc.text || res.Tokens != tc.tokens || res.Done != tc.done || res.StreamError != tc.sErr ||
				strings.Join(notes, "\n") != tc.note {
				t.Errorf("got text %q, tokens %d, done %v, stream error %v, notes %q; want %q, %d, %v, %v, %q",
					res.Text, res.Tokens, res.Done, res.StreamError, notes, tc.text, tc.tokens, tc.done, tc.sErr, tc.note)
			}
			if tc.tokens > 0 && res.TTFT <= 0 {
				t.Errorf("TTFT %s, want > 0", res.TTFT)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	for raw, want := range map[string]string{
		``:                                   "",
		`null`:                               "",
		`{"message":"bad model","code":404}`: "bad model",
		`"overloaded"`:                       "overloaded",
		`{"code":500}`:                       `{"code":500}`,
	} {
		if got := errorMessage([]byte(raw)); got != want {
			t.Errorf("errorMessage(%s) = %q, want %q", raw, got, want)
		}
	}
}

// FuzzReadStream checks that any byte stream reads without panicking into a
// consistent Result.
func FuzzReadStream(f *testing.F) {
	f.Add("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("data: {\"error\":\"x\"}\n\ndata:\ndata:\n\n: c\n")
	f.Fuzz(func(t *testing.T, body string) {
		var res Result
		_, _ = readStream(strings.NewReader(body), time.Now(), &res)
		if res.Tokens < 0 && !strings.Contains(body, "-") {
			t.Fatalf("negative tokens %d", res.Tokens)
		}
		if res.Text != "" && res.TTFT <= 0 {
			t.Fatalf("text %q without a time to first token", res.Text)
		}
	})
}
