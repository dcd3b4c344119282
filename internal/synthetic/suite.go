// Package synthetic runs suites of test requests with expectations against
// an OpenAI-compatible endpoint and reports which passed and why not.
package synthetic

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

// Defaults applied to what a suite file leaves out.
const (
	// DefaultTimeout bounds each request when the suite sets no timeout.
	DefaultTimeout = 60 * time.Second
	// ChatPath is a case's path when it has messages and no path.
	ChatPath = "/v1/chat/completions"
	// CompletionPath is a case's path when it has a prompt and no path.
	CompletionPath = "/v1/completions"
)

// Suite is a parsed suite file: cases and how to run them. Parse and Load
// return it with every default applied and every value validated.
type Suite struct {
	// File is the path the suite was loaded from; "" when parsed from bytes.
	File string
	// Concurrency is how many requests are in flight at once; Run treats
	// values below 1 as 1.
	Concurrency int
	// Repeat is how many times each case runs; Run treats values below 1
	// as 1.
	Repeat int
	// Timeout bounds each request, from sending it to the end of its body;
	// 0 or less means DefaultTimeout.
	Timeout time.Duration
	// Defaults are request body fields merged into every case's request
	// under the case's own Body; nil means none.
	Defaults map[string]any
	// Cases are the test cases, in file order; at least one, names unique.
	Cases []Case
}

// Case is one request and what its answer must satisfy.
type Case struct {
	// Name identifies the case in results and reports; unique in its suite.
	Name string
	// Path is appended to the base URL, e.g. /v1/chat/completions.
	Path string
	// Messages is the chat request's messages (each with at least role and
	// content). A case with Messages sends them; one without sends Prompt.
	Messages []map[string]any
	// Prompt is the completion request's prompt, used when Messages is empty.
	Prompt string
	// Stream asks for a streamed (SSE) answer.
	Stream bool
	// Body holds any other request body fields; nil means none. It never
	// holds messages, prompt or stream.
	Body map[string]any
	// Expect is what the answer must satisfy.
	Expect Expect
}

// Expect lists a case's expectations. The zero value expects a 200 answer
// and nothing else.
type Expect struct {
	// Status is the expected HTTP status; 0 means 200.
	Status int
	// Model, when set, must equal the answer's model field.
	Model string
	// Contains must all appear in the answer text (case-sensitive).
	Contains []string
	// ContainsI must all appear in the answer text, ignoring case.
	ContainsI []string
	// NotContains must not appear in the answer text (case-sensitive).
	NotContains []string
	// Regex, when set, must match the answer text somewhere (RE2 syntax;
	// anchor it with ^ and $ to match the whole text).
	Regex *regexp.Regexp
	// JSON requires the answer text to parse as JSON.
	JSON bool
	// Done requires a stream to end with data: [DONE]. Parse sets it for
	// streamed cases unless the file says done: false; it is false for
	// cases that are not streamed.
	Done bool
	// MaxTTFT bounds the time to the first token (for a stream: the first
	// event carrying text; otherwise: the response headers); 0 means none.
	MaxTTFT time.Duration
	// MaxTotal bounds the time to the end of the answer; 0 means none.
	MaxTotal time.Duration
	// MinTokens is the least number of output tokens; 0 means none.
	MinTokens int
}

// Load reads and parses the suite file at path. A problem with its content
// is returned as an *Error naming the file and each bad key.
func Load(path string) (*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read suite: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			se.File = path
		}
		return nil, err
	}
	s.File = path
	return s, nil
}

// Parse decodes a suite from YAML, strictly: unknown keys, values of the
// wrong type or out of range, a case with both messages and prompt (or
// neither) and bad regular expressions are all reported in one *Error, each
// with its key path (e.g. cases[2].expect.max_ttft_ms) and line.
func Parse(b []byte) (*Suite, error) {
	d := &decoder{}
	s := d.decode(b)
	if len(d.errs) > 0 {
		return nil, &Error{Fields: d.errs}
	}
	return s, nil
}

// FieldError is one problem in a suite file: its dotted key path (such as
// cases[2].expect.max_ttft_ms, or "(file)" for the whole file), its line
// and what is wrong. It is the configuration's field error, so both read
// alike.
type FieldError = config.FieldError

// Error is an invalid suite: one or more FieldErrors.
type Error struct {
	// File is the suite file's path, "" when not from a file.
	File string
	// Fields lists every problem found, in file order.
	Fields []*FieldError
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid suite")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	b.WriteByte(':')
	for _, f := range e.Fields {
		b.WriteString("\n  ")
		b.WriteString(f.Error())
	}
	return b.String()
}
