package synthetic

// Reading an answer, JSON or SSE, into a Result as it arrives, so that the
// time to the first token is measured when that token is read.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxAnswerBytes bounds a non-streamed answer and one stream event.
const maxAnswerBytes = 32 << 20

// wireAnswer is what is read of a completion answer or of a stream event.
type wireAnswer struct {
	Model   string `json:"model"`
	Choices []struct {
		Index   int    `json:"index"`
		Text    string `json:"text"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// readAnswer reads resp's body into res. It returns problems with the
// answer's form, and an error when the body could not be read to its end.
func readAnswer(resp *http.Response, start time.Time, res *Result) ([]string, error) {
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return readStream(resp.Body, start, res)
	}
	res.TTFT = time.Since(start)
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(b) > maxAnswerBytes {
		return []string{fmt.Sprintf("answer larger than %d MiB", maxAnswerBytes>>20)}, nil
	}
	ok := resp.StatusCode/100 == 2
	var w wireAnswer
	if err := json.Unmarshal(b, &w); err != nil {
		if !ok {
			res.ErrorMessage = clip(string(b), 200)
			return nil, nil
		}
		return []string{fmt.Sprintf("answer is not JSON: %v", err)}, nil
	}
	res.Model = w.Model
	res.ErrorMessage = errorMessage(w.Error)
	for _, c := range w.Choices {
		if c.Index == 0 {
			res.Text = c.Message.Content + c.Text
			break
		}
	}
	if w.Usage != nil {
		res.Tokens = w.Usage.CompletionTokens
	}
	if res.Stream && ok {
		return []string{fmt.Sprintf("expected an event stream (stream: true), got Content-Type %q", resp.Header.Get("Content-Type"))}, nil
	}
	return nil, nil
}

// streamState accumulates a stream's events.
type streamState struct {
	res       *Result
	start     time.Time
	text      strings.Builder
	chunks    int // events carrying text for choice 0
	usage     int // usage.completion_tokens, -1 until seen
	malformed int
	firstBad  string
}

// readStream reads server-sent events from body into res until EOF.
func readStream(body io.Reader, start time.Time, res *Result) ([]string, error) {
	st := &streamState{res: res, start: start, usage: -1}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxAnswerBytes)
	var data []byte
	has := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 { // a blank line ends an event
			if has {
				st.event(data)
			}
			data, has = data[:0], false
			continue
		}
		// Other fields (event:, id:, retry:) and comments (:...) are ignored.
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if has {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(v, []byte(" "))...)
			has = true
		}
	}
	if has { // the last event, without its blank line
		st.event(data)
	}
	res.Text, res.Tokens = st.text.String(), st.chunks
	if st.usage >= 0 {
		res.Tokens = st.usage
	}
	var notes []string
	if st.malformed > 0 {
		notes = append(notes, fmt.Sprintf("%d malformed stream event(s), the first: %s", st.malformed, st.firstBad))
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return append(notes, fmt.Sprintf("stream line longer than %d MiB", maxAnswerBytes>>20)), nil
		}
		return notes, fmt.Errorf("reading the stream: %w", err)
	}
	return notes, nil
}

// event handles one event's data.
func (st *streamState) event(data []byte) {
	res := st.res
	if res.Done {
		return // nothing counts after [DONE]
	}
	if string(data) == "[DONE]" {
		res.Done = true
		return
	}
	var w wireAnswer
	if err := json.Unmarshal(data, &w); err != nil {
		if st.malformed++; st.malformed == 1 {
			st.firstBad = fmt.Sprintf("%q", clip(string(data), 80))
		}
		return
	}
	if msg := errorMessage(w.Error); msg != "" {
		res.StreamError = true
		if res.ErrorMessage == "" {
			res.ErrorMessage = msg
		}
	}
	if res.Model == "" {
		res.Model = w.Model
	}
	if w.Usage != nil {
		st.usage = w.Usage.CompletionTokens
	}
	for _, c := range w.Choices {
		if c.Index != 0 {
			continue
		}
		piece := c.Delta.Content + c.Text
		if piece == "" && c.Delta.ReasoningContent == "" && c.Delta.Reasoning == "" {
			continue
		}
		if st.chunks == 0 {
			res.TTFT = time.Since(st.start)
		}
		st.chunks++
		st.text.WriteString(piece)
	}
}

// errorMessage returns the message of an error field: an object with a
// message (OpenAI's and vLLM's shape), a string, or anything else as JSON.
func errorMessage(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s
	}
	return clip(string(raw), 200)
}

// clip returns s trimmed and cut to at most n bytes of valid UTF-8, with an
// ellipsis when it was cut.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
