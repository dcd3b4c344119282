package synthetic

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

const (
	testModel  = "test-model"
	testTokens = 4
	testPrompt = "Say hello"
)

// serve starts h on a loopback socket and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// simulator returns a mockllm server for cfg; Model and Tokens default to
// testModel and testTokens.
func simulator(t *testing.T, cfg mockllm.Config) *mockllm.Server {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = testModel
	}
	if cfg.Tokens == 0 {
		cfg.Tokens = testTokens
	}
	m, err := mockllm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// oneCase parses a suite of the case whose keys (after its name) are given
// one per line.
func oneCase(t *testing.T, header, keys string) *Suite {
	t.Helper()
	y := header + "\ncases:\n  - name: c\n    " + strings.ReplaceAll(keys, "\n", "\n    ") + "\n"
	s, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("suite:\n%s\n%v", y, err)
	}
	return s
}

// runAll runs s with r and returns its results and report.
func runAll(t *testing.T, r *Runner, s *Suite) ([]Result, Report) {
	t.Helper()
	var mu sync.Mutex
	var results []Result
	rep := r.Run(context.Background(), s, func(res Result) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, res)
	})
	return results, rep
}

// rawHandler answers every request with status, content type and body.
func rawHandler(status int, contentType, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func TestExpectations(t *testing.T) {
	answer := mockllm.Answer(testModel, testPrompt, testTokens)
	word := strings.Fields(answer)[1]
	chat := "messages: [{role: user, content: " + testPrompt + "}]"
	stream := chat + "\nstream: true"
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name    string
		cfg     mockllm.Config // for the simulator, unless handler or url
		handler http.Handler
		url     string
		header  string // suite keys before cases
		keys    string // the case's keys
		want    string // a failure reason; "" for a pass
	}{
		{name: "status 200", keys: chat + "\nexpect: {status: 200}"},
		{name: "status 500 with an error rate", cfg: mockllm.Config{ErrorRate: 1}, keys: chat,
			want: "expected status 200, got 500: Simulated engine failure"},
		{name: "expected 404 for an unknown model", keys: chat + "\nbody: {model: nope}\nexpect: {status: 404}"},
		{name: "expected 404 for a streamed request", keys: stream + "\nbody: {model: nope}\nexpect: {status: 404}"},
		{name: "contains the predicted word", keys: stream + "\nexpect: {contains: [" + word + "]}"},
		{name: "does not contain", keys: chat + "\nexpect: {contains: [zebra]}", want: `text does not contain "zebra"`},
		{name: "contains ignoring case", keys: chat + "\nexpect: {contains_i: [" + strings.ToUpper(word) + "]}"},
		{name: "contains case-sensitive", keys: chat + "\nexpect: {contains: [" + strings.ToUpper(word) + "]}",
			want: "text does not contain"},
		{name: "not_contains", keys: chat + "\nexpect: {not_contains: [" + word + "]}", want: fmt.Sprintf("text contains %q", word)},
		{name: "regex matches", keys: stream + "\nexpect: {regex: '^[a-z]+( [a-z]+){3}$'}"},
		{name: "regex does not match", keys: chat + "\nexpect: {regex: '^[0-9]+$'}", want: "text does not match regex `^[0-9]+$`"},
		{name: "model matches", keys: chat + "\nexpect: {model: " + testModel + "}"},
		{name: "model differs", keys: chat + "\nexpect: {model: other}", want: `expected model "other", got "test-model"`},
		{name: "json", handler: rawHandler(200, "application/json",
			`{"model":"m","choices":[{"index":0,"message":{"content":"{\"a\": [1, 2]}"}}]}`), keys: chat + "\nexpect: {json: true}"},
		{name: "not json", keys: chat + "\nexpect: {json: true}", want: "text is not JSON"},
		{name: "ttft within bound", keys: stream + "\nexpect: {max_ttft_ms: 5000, max_total_ms: 5000}"},
		{name: "ttft too slow", cfg: mockllm.Config{TTFT: 40 * time.Millisecond}, keys: stream + "\nexpect: {max_ttft_ms: 10}",
			want: "time to first token"},
		{name: "non-stream ttft too slow", cfg: mockllm.Config{TTFT: 40 * time.Millisecond}, keys: chat + "\nexpect: {max_ttft_ms: 10}",
			want: "time to first token"},
		{name: "total too slow", cfg: mockllm.Config{ITL: 15 * time.Millisecond}, keys: stream + "\nexpect: {max_total_ms: 10}",
			want: "total time"},
		{name: "min tokens from usage", keys: chat + "\nexpect: {min_tokens: 4}"},
		{name: "min tokens from stream chunks", keys: stream + "\nexpect: {min_tokens: 4}"},
		{name: "too few tokens", keys: chat + "\nbody: {max_tokens: 2}\nexpect: {min_tokens: 3}",
			want: "got 2 output tokens, expected at least 3"},
		{name: "error inside the stream", cfg: mockllm.Config{StreamErrorRate: 1}, keys: stream,
			want: "error inside the stream: Simulated engine failure mid-stream"},
		{name: "stream without [DONE]", handler: rawHandler(200, "text/event-stream",
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"), keys: stream, want: "stream ended without [DONE]"},
		{name: "stream without [DONE] allowed", handler: rawHandler(200, "text/event-stream",
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"), keys: stream + "\nexpect: {done: false}"},
		{name: "malformed stream event", handler: rawHandler(200, "text/event-stream", "data: {oops\n\ndata: [DONE]\n\n"),
			keys: stream, want: "1 malformed stream event(s)"},
		{name: "JSON instead of a stream", handler: rawHandler(200, "application/json", `{"choices":[]}`),
			keys: stream, want: "expected an event stream"},
		{name: "connection refused", url: closed.URL, keys: chat, want: "request failed: "},
		{name: "timeout", cfg: mockllm.Config{TTFT: 5 * time.Second}, header: "timeout: 30ms", keys: stream,
			want: "request failed: no complete answer within the 30ms timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			switch {
			case url != "":
			case tc.handler != nil:
				url = serve(t, tc.handler)
			default:
				url = serve(t, simulator(t, tc.cfg))
			}
			header := tc.header
			if header == "" {
				header = "timeout: 10s"
			}
			s := oneCase(t, header+"\ndefaults: {model: "+testModel+"}", tc.keys)
			results, rep := runAll(t, &Runner{BaseURLs: []string{url}}, s)
			if len(results) != 1 || rep.Requests != 1 {
				t.Fatalf("got %d results, report %+v; want 1", len(results), rep)
			}
			res := results[0]
			if tc.want == "" {
				if !res.Pass || len(res.Failures) > 0 {
					t.Fatalf("failed: %q (text %q)", res.Failures, res.Text)
				}
				return
			}
			if res.Pass || !strings.Contains(strings.Join(res.Failures, "\n"), tc.want) {
				t.Fatalf("pass %v, failures %q; want one with %q", res.Pass, res.Failures, tc.want)
			}
		})
	}
}

func TestResultDescribesTheAnswer(t *testing.T) {
	url := serve(t, simulator(t, mockllm.Config{StreamErrorRate: 0}))
	want := mockllm.Answer(testModel, "a\nb", testTokens)
	for _, keys := range []string{
		"messages: [{role: system, content: a}, {role: user, content: b}]",
		"messages: [{role: system, content: a}, {role: user, content: b}]\nstream: true",
		"prompt: \"a\\nb\"",
		"prompt: \"a\\nb\"\nstream: true\nbody: {stream_options: {include_usage: true}}",
	} {
		s := oneCase(t, "defaults: {model: "+testModel+"}", keys)
		results, _ := runAll(t, &Runner{BaseURLs: []string{url}}, s)
		res := results[0]
		if !res.Pass || res.Text != want || res.Model != testModel || res.Tokens != testTokens || res.Status != 200 ||
			res.Stream != s.Cases[0].Stream || res.Done != res.Stream || res.StreamError ||
			res.TTFT <= 0 || res.Duration < res.TTFT || res.Case != "c" || res.Iteration != 1 || res.URL != url {
			t.Errorf("%s:\ngot %+v\nwant text %q", keys, res, want)
		}
	}
}

func TestStreamErrorIsFlagged(t *testing.T) {
	url := serve(t, simulator(t, mockllm.Config{StreamErrorRate: 1}))
	s := oneCase(t, "defaults: {model: "+testModel+"}", "prompt: hi\nstream: true")
	results, _ := runAll(t, &Runner{BaseURLs: []string{url}}, s)
	if res := results[0]; !res.StreamError || res.Pass || res.Status != 200 || !strings.Contains(res.ErrorMessage, "mid-stream") {
		t.Errorf("result %+v; want a failing StreamError with the message", res)
	}
}

func TestRunHonoursConcurrency(t *testing.T) {
	const concurrency = 3
	var inFlight, most atomic.Int64
	full := make(chan struct{})
	var once sync.Once
	sim := simulator(t, mockllm.Config{})
	// The first requests wait until `concurrency` are in flight together,
	// which proves the runner reaches its concurrency; then all go through.
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n == concurrency {
			once.Do(func() { close(full) })
		}
		select {
		case <-full:
		case <-r.Context().Done():
			return
		}
		sim.ServeHTTP(w, r)
	}))
	s, err := Parse([]byte(fmt.Sprintf(`
concurrency: %d
repeat: 4
timeout: 10s
defaults: {model: %s}
cases:
  - {name: a, prompt: one}
  - {name: b, prompt: two, stream: true}
`, concurrency, testModel)))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	rep := (&Runner{BaseURLs: []string{url}}).Run(context.Background(), s, func(Result) { calls.Add(1) })
	if got := most.Load(); got != concurrency {
		t.Errorf("max in flight %d, want %d", got, concurrency)
	}
	if calls.Load() != 8 || rep.Requests != 8 || rep.Passed != 8 || !rep.OK() {
		t.Errorf("each called %d times, report %+v; want 8 passing requests", calls.Load(), rep)
	}
	for _, c := range rep.PerCase {
		if c.Requests != 4 || c.Passed != 4 {
			t.Errorf("case %s: %+v, want 4 passed", c.Name, c)
		}
	}
}

func TestRunRoundRobin(t *testing.T) {
	a, b := simulator(t, mockllm.Config{}), simulator(t, mockllm.Config{})
	r := &Runner{BaseURLs: []string{serve(t, a), serve(t, b) + "/"}, Model: testModel}
	s := oneCase(t, "repeat: 6\nconcurrency: 2", "prompt: hi")
	if _, rep := runAll(t, r, s); !rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	if na, nb := a.Stats().Requests, b.Stats().Requests; na != 3 || nb != 3 {
		t.Errorf("requests per replica %d and %d, want 3 and 3", na, nb)
	}
}

func TestModelRewriting(t *testing.T) {
	url := serve(t, simulator(t, mockllm.Config{Model: "served"}))
	for _, tc := range []struct {
		name               string
		model, clientModel string
		body               string
		wantStatus         int
	}{
		{"no model in the case gets Model", "served", "", "{}", 200},
		{"the client model becomes Model", "served", "llama", "{model: llama}", 200},
		{"another model is kept", "served", "llama", "{model: other}", 404},
		{"without ClientModel a model is kept", "served", "", "{model: llama}", 404},
		{"without Model nothing changes", "", "llama", "{model: llama}", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := oneCase(t, "", "prompt: hi\nbody: "+tc.body)
			results, _ := runAll(t, &Runner{BaseURLs: []string{url}, Model: tc.model, ClientModel: tc.clientModel}, s)
			if got := results[0].Status; got != tc.wantStatus {
				t.Errorf("status %d, want %d (%q)", got, tc.wantStatus, results[0].Failures)
			}
		})
	}
}

func TestRequestBodyAndHeaders(t *testing.T) {
	var got map[string]any
	var auth, ctype, path string
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, ctype, path = r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.URL.Path
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"choices":[{"index":0,"message":{"content":"ok"}}]}`)
	}))
	s := oneCase(t, "defaults: {max_tokens: 8, temperature: 0, model: llama}",
		"messages: [{role: user, content: hi}]\nbody: {temperature: 0.5, seed: 7}")
	r := &Runner{BaseURLs: []string{url}, Header: http.Header{"Authorization": {"Bearer t"}}}
	if _, rep := runAll(t, r, s); !rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	b, _ := json.Marshal(got)
	want := `{"max_tokens":8,"messages":[{"content":"hi","role":"user"}],"model":"llama","seed":7,"temperature":0.5}`
	if string(b) != want || auth != "Bearer t" || ctype != "application/json" || path != ChatPath {
		t.Errorf("body %s, Authorization %q, Content-Type %q, path %q; want %s", b, auth, ctype, path, want)
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	arrived := make(chan struct{}, 8)
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets net/http notice the client leaving.
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-r.Context().Done() // never answers
	}))
	s := oneCase(t, "repeat: 5\nconcurrency: 2", "prompt: hi")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	var calls atomic.Int64
	rep := (&Runner{BaseURLs: []string{url}}).Run(ctx, s, func(Result) { calls.Add(1) })
	if calls.Load() != 0 || rep.Requests != 0 || rep.Skipped != 5 || rep.OK() {
		t.Errorf("each called %d times, report %+v; want nothing but 5 skipped", calls.Load(), rep)
	}
}
