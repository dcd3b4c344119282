package answer

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		stream bool
		want   Answer
	}{
		{"chat", `{"model":"m","choices":[{"message":{"content":"hi there"}}],"usage":{"completion_tokens":2}}`, false, Answer{Text: "hi there", Model: "m", Tokens: 2}},
		{"completion", `{"model":"m","choices":[{"text":"abc"}]}`, false, Answer{Text: "abc", Model: "m"}},
		{"stream", "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\" b\"}}]}\n\ndata: [DONE]\n\n", true, Answer{Text: "a b", Model: "m", Tokens: 2, Done: true}},
		{"stream with usage", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":9}}\n\ndata: [DONE]\n\n", true, Answer{Text: "a", Tokens: 9, Done: true}},
		{"error in stream", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n", true, Answer{Text: "a", Tokens: 1, Done: true, Error: `{"message":"boom"}`}},
		{"cut stream", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", true, Answer{Text: "a", Tokens: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body), tt.stream)
			if err != nil || got != tt.want {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := Parse([]byte("not json"), false); err == nil {
		t.Fatal("garbage parsed")
	}
}
