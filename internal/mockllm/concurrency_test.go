package mockllm

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// start sends a request in the background; the channel yields its status
// once the body has been read, or 0 if the request failed (e.g. canceled).
func start(ctx context.Context, url, body string) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			done <- 0
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			done <- 0
			return
		}
		done <- resp.StatusCode
	}()
	return done
}

// TestQueueing checks that requests beyond MaxConcurrent wait, show up as
// waiting, and run once a slot frees.
func TestQueueing(t *testing.T) {
	s, ts := newTestServer(t, Config{MaxConcurrent: 1, TTFT: time.Hour})
	url, body := ts.URL+"/v1/chat/completions", chatBody(testModel, "hi", "")

	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a := start(ctxA, url, body)
	waitFor(t, "the first request to run", func() bool { return s.Stats().Running == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, c := start(ctx, url, body), start(ctx, url, body)
	waitFor(t, "two requests to wait", func() bool { st := s.Stats(); return st.Running == 1 && st.Waiting == 2 })

	_, _, metrics := do(t, http.MethodGet, ts.URL+"/metrics", "")
	for _, want := range []string{
		`vllm:num_requests_running{model_name="test-model"} 1` + "\n",
		`vllm:num_requests_waiting{model_name="test-model"} 2` + "\n",
		`vllm:kv_cache_usage_perc{model_name="test-model"} 1` + "\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	s.SetTTFT(0) // read when a request starts generating: affects b and c only
	cancelA()
	if got := <-a; got != 0 {
		t.Errorf("canceled request: status %d", got)
	}
	for i, ch := range []<-chan int{b, c} {
		if got := <-ch; got != http.StatusOK {
			t.Errorf("queued request %d: status %d, want 200", i, got)
		}
	}
	waitFor(t, "the counters to settle", func() bool {
		st := s.Stats()
		return st == Stats{Requests: 3, Succeeded: 2, Canceled: 1}
	})
	// Each request that got a slot counts once in each phase (a, canceled
	// while running, too); b and c waited for a's slot meanwhile.
	waitFor(t, "both phases of all three requests in the metrics", func() bool {
		_, _, metrics = do(t, http.MethodGet, ts.URL+"/metrics", "")
		return strings.Contains(metrics, `vllm:request_queue_time_seconds_count{model_name="test-model"} 3`+"\n") &&
			strings.Contains(metrics, `vllm:request_inference_time_seconds_count{model_name="test-model"} 3`+"\n")
	})
	_, rest, _ := strings.Cut(metrics, `vllm:request_queue_time_seconds_sum{model_name="test-model"} `)
	line, _, _ := strings.Cut(rest, "\n")
	if v, err := strconv.ParseFloat(line, 64); err != nil || v <= 0 {
		t.Errorf("queue time sum %q, want above 0 (two requests waited)", line)
	}
}

// TestClientDisconnect checks that a client leaving stops its request at
// once, whatever it is waiting for.
func TestClientDisconnect(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		stream   bool
		inFlight func(Stats) bool
	}{
		{"non-streamed, before the answer", Config{TTFT: time.Hour}, false,
			func(s Stats) bool { return s.Running == 1 }},
		{"streamed, before the first token", Config{TTFT: time.Hour}, true,
			func(s Stats) bool { return s.Running == 1 }},
		{"streamed, between tokens", Config{ITL: time.Hour}, true,
			func(s Stats) bool { return s.Running == 1 }},
		{"waiting for a slot", Config{MaxConcurrent: 1, TTFT: time.Hour}, false,
			func(s Stats) bool { return s.Waiting == 1 }},
		{"during extra latency", Config{ExtraLatency: time.Hour}, false,
			func(s Stats) bool { return s.Requests == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ts := newTestServer(t, tt.cfg)
			url := ts.URL + "/v1/chat/completions"
			extra := ""
			if tt.stream {
				extra = `,"stream":true`
			}
			var blockers []context.CancelFunc
			if tt.cfg.MaxConcurrent > 0 { // fill the only slot first
				ctx, cancel := context.WithCancel(context.Background())
				blockers = append(blockers, cancel)
				done := start(ctx, url, chatBody(testModel, "hi", ""))
				defer func() { <-done }()
				waitFor(t, "the slot to fill", func() bool { return s.Stats().Running == 1 })
			}
			defer func() {
				for _, cancel := range blockers {
					cancel()
				}
			}()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := start(ctx, url, chatBody(testModel, "hi", extra))
			waitFor(t, "the request to be in flight", func() bool { return tt.inFlight(s.Stats()) })
			cancel()
			<-done
			waitFor(t, "the request to be canceled", func() bool {
				st := s.Stats()
				return st.Canceled == 1 && st.Waiting == 0 && st.Running == len(blockers)
			})
		})
	}
}

// TestLatency checks that TTFT, ITL and ExtraLatency delay the answer.
func TestLatency(t *testing.T) {
	cfg := Config{TTFT: 20 * time.Millisecond, ITL: 5 * time.Millisecond, Tokens: 4, ExtraLatency: 10 * time.Millisecond}
	want := cfg.ExtraLatency + cfg.TTFT + 3*cfg.ITL
	_, ts := newTestServer(t, cfg)
	for _, extra := range []string{"", `,"stream":true`} {
		begin := time.Now()
		status, _, body := do(t, http.MethodPost, ts.URL+"/v1/completions", textBody(testModel, "x", extra))
		if took := time.Since(begin); status != 200 || took < want {
			t.Errorf("stream=%v: status %d after %v, want 200 after at least %v: %s", extra != "", status, took, want, body)
		}
	}
}
