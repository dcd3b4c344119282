package synthetic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Runner sends a suite's requests to one or more OpenAI-compatible
// endpoints. Its zero value is not useful: set at least BaseURLs. A Runner
// is not modified by Run, so one Runner may run several suites at once.
type Runner struct {
	// HTTP sends the requests; nil means http.DefaultClient. The suite's
	// timeout applies to each request on top of the client's own.
	HTTP *http.Client
	// BaseURLs are the endpoints' base URLs, such as http://127.0.0.1:8080;
	// a case's path is appended. Requests go to them in turn (round-robin).
	// With none, every request fails with a transport error.
	BaseURLs []string
	// Model, when set, is the model requested by a case whose request names
	// no model, or names ClientModel. "" sends each case's model as written.
	Model string
	// ClientModel is the client-facing model name (the gateway's
	// model_name) that Model replaces, so that a suite written for the
	// gateway can run against a replica directly. "" replaces only missing
	// models.
	ClientModel string
	// Header is added to every request, e.g. Authorization; nil means none.
	Header http.Header
	// Authorize, when set, is called with each request's base URL and
	// header just before it is sent, after Header is added, so that a key
	// that changes while the suite runs (a reloaded key file) is the one
	// sent. Nil: Header alone.
	Authorize func(baseURL string, h http.Header)
}

// Result is the outcome of one request of a case.
type Result struct {
	// Case is the case's name.
	Case string
	// Iteration counts the case's runs from 1 up to Suite.Repeat.
	Iteration int
	// URL is the base URL the request was sent to.
	URL string
	// Pass reports that every expectation held; Failures is then empty.
	Pass bool
	// Failures lists why the case failed, each a readable reason such as
	// "expected status 200, got 500" or "stream ended without [DONE]".
	Failures []string
	// Status is the HTTP status; 0 when no response arrived.
	Status int
	// Stream reports that the case asked for a streamed answer.
	Stream bool
	// TTFT is the time to the first token: for a stream, to the first event
	// carrying text; otherwise to the response headers. 0 when none arrived.
	TTFT time.Duration
	// Duration is the time from sending the request to the end of the answer.
	Duration time.Duration
	// Tokens is the number of output tokens: usage.completion_tokens when
	// the answer reports it, else the number of stream events carrying text.
	Tokens int
	// Done reports that a stream ended with data: [DONE].
	Done bool
	// StreamError reports an error event inside a 200 stream (vLLM's
	// data: {"error": ...} when generation fails); it is a failure.
	StreamError bool
	// ErrorMessage is the error the server sent: the message of an error
	// answer or of an in-stream error event; "" when none.
	ErrorMessage string
	// TransportError says why no complete answer arrived (connection
	// refused, reset, timeout); "" when one did.
	TransportError string
	// Model is the answer's model field.
	Model string
	// Text is the answer text: the first choice's message content or text,
	// or the concatenation of its stream deltas.
	Text string
}

// run is one request to make: a case and its iteration.
type run struct {
	index     int // into Suite.Cases
	iteration int // from 1
}

// Run sends every case of s s.Repeat times (all cases once, then again),
// with at most s.Concurrency requests in flight, each bounded by s.Timeout,
// and returns the report.
//
// each, when not nil, is called with every result as soon as its request is
// done. It is called from several goroutines at once: the caller
// synchronises what it touches. Run returns after the last call.
//
// Run stops starting requests when ctx ends and cancels those in flight;
// these are not results (each is not called for them) and are counted in
// Report.Skipped.
func (r *Runner) Run(ctx context.Context, s *Suite, each func(Result)) Report {
	start := time.Now()
	t := newTally(s)
	repeat := max(s.Repeat, 1)
	total := len(s.Cases) * repeat
	runs := make(chan run)
	var next atomic.Uint64 // round-robin position in BaseURLs
	var wg sync.WaitGroup
	for range min(max(s.Concurrency, 1), total) {
		wg.Go(func() {
			for j := range runs {
				if ctx.Err() != nil {
					continue
				}
				res, ok := r.do(ctx, s, j, next.Add(1)-1)
				if !ok {
					continue
				}
				t.add(j.index, res)
				if each != nil {
					each(res)
				}
			}
		})
	}
dispatch:
	for it := 1; it <= repeat; it++ {
		for i := range s.Cases {
			select {
			case runs <- run{index: i, iteration: it}:
			case <-ctx.Done():
				break dispatch
			}
		}
	}
	close(runs)
	wg.Wait()
	return t.report(s, total, time.Since(start))
}

// do sends one request and checks its answer. It reports false when ctx
// ended before the answer did.
func (r *Runner) do(ctx context.Context, s *Suite, j run, turn uint64) (Result, bool) {
	c := &s.Cases[j.index]
	res := Result{Case: c.Name, Iteration: j.iteration, Stream: c.Stream}
	var notes []string
	if len(r.BaseURLs) == 0 {
		res.TransportError = "no base URL to send the request to"
	} else {
		res.URL = r.BaseURLs[turn%uint64(len(r.BaseURLs))]
		notes = r.send(ctx, s, c, &res)
		if res.TransportError != "" && ctx.Err() != nil {
			return res, false // cut short by the caller: not a result
		}
	}
	res.Failures = evaluate(&c.Expect, &res, notes)
	res.Pass = len(res.Failures) == 0
	return res, true
}

// send makes the request for c to res.URL and records the answer in res.
// It returns problems with the answer's form (malformed events, ...).
func (r *Runner) send(ctx context.Context, s *Suite, c *Case, res *Result) []string {
	body, err := json.Marshal(r.requestBody(s, c))
	if err != nil {
		res.TransportError = fmt.Sprintf("encode request: %v", err)
		return nil
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := strings.TrimRight(res.URL, "/") + c.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		res.TransportError = fmt.Sprintf("bad request URL %q: %v", url, err)
		return nil
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if r.Authorize != nil {
		r.Authorize(res.URL, req.Header)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	client := r.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.Duration = time.Since(start)
		res.TransportError = transportError(ctx, err, timeout)
		return nil
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	notes, err := readAnswer(resp, start, res)
	res.Duration = time.Since(start)
	if err != nil {
		res.TransportError = transportError(ctx, err, timeout)
	}
	return notes
}

// requestBody merges the suite's defaults, the case's body, its messages or
// prompt and stream, then applies the model rewriting.
func (r *Runner) requestBody(s *Suite, c *Case) map[string]any {
	m := make(map[string]any, len(s.Defaults)+len(c.Body)+2)
	maps.Copy(m, s.Defaults)
	maps.Copy(m, c.Body)
	if len(c.Messages) > 0 {
		m["messages"] = c.Messages
	} else {
		m["prompt"] = c.Prompt
	}
	if c.Stream {
		m["stream"] = true
	}
	if r.Model != "" {
		model, ok := m["model"]
		if !ok || model == nil || (r.ClientModel != "" && model == r.ClientModel) {
			m["model"] = r.Model
		}
	}
	return m
}

// transportError describes err, naming the timeout when it struck.
func transportError(ctx context.Context, err error, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("no complete answer within the %s timeout", timeout)
	}
	return err.Error()
}
