// Package answer reads an OpenAI-compatible completion answer — a JSON
// body or an SSE stream — into its text, model, token count and errors.
package answer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
)

// Answer is what a completion said.
type Answer struct {
	// Text is the first choice's message content or text, or the
	// concatenation of its stream deltas.
	Text string
	// Model is the answer's model field.
	Model string
	// Tokens is usage.completion_tokens, else the number of stream chunks
	// that carried text.
	Tokens int
	// Done reports a stream that ended with data: [DONE].
	Done bool
	// Error is an error object inside the answer (vLLM sends one inside a
	// 200 stream when generation fails), "" when none.
	Error string
}

type choice struct {
	Text    string `json:"text"`
	Message struct {
		Content string `json:"content"`
	} `json:"message"`
	Delta struct {
		Content string `json:"content"`
	} `json:"delta"`
}

type body struct {
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *struct {
		N int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// Parse reads b, a whole answer; stream says whether it is SSE.
func Parse(b []byte, stream bool) (Answer, error) {
	if !stream {
		var v body
		if err := json.Unmarshal(b, &v); err != nil {
			return Answer{}, err
		}
		a := Answer{Model: v.Model}
		if len(v.Choices) > 0 {
			a.Text = v.Choices[0].Message.Content + v.Choices[0].Text
		}
		if v.Usage != nil {
			a.Tokens = v.Usage.N
		}
		if len(v.Error) > 0 && string(v.Error) != "null" {
			a.Error = string(v.Error)
		}
		return a, nil
	}
	var a Answer
	var text strings.Builder
	chunks, usage := 0, -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			a.Done = true
			continue
		}
		var v body
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			continue // a malformed event: leave it to the text comparison
		}
		if len(v.Error) > 0 && string(v.Error) != "null" {
			a.Error = string(v.Error)
		}
		if v.Model != "" {
			a.Model = v.Model
		}
		if v.Usage != nil {
			usage = v.Usage.N
		}
		for _, c := range v.Choices {
			if t := c.Delta.Content + c.Text; t != "" {
				text.WriteString(t)
				chunks++
			}
		}
	}
	a.Text, a.Tokens = text.String(), chunks
	if usage >= 0 {
		a.Tokens = usage
	}
	return a, sc.Err()
}
