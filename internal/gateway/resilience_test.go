package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestReplicaKilledUnderLoad kills one of blue's two replicas while short
// requests flow. Requests that start after the kill get no error (a dead
// connection is retried on the other replica), the dead replica is
// ejected, and it is readmitted after passing checks when it comes back.
func TestReplicaKilledUnderLoad(t *testing.T) {
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		killedAt   atomic.Int64 // unix nanos, 0 before the kill
		afterKill  atomic.Int64
		failedLate atomic.Int64
		failedAny  atomic.Int64
		stop       atomic.Bool
		wg         sync.WaitGroup
		firstErr   atomic.Value
	)
	for i := range 32 {
		wg.Go(func() {
			for n := 0; !stop.Load() && n < 5000; n++ {
				start := time.Now().UnixNano()
				res, err := e.chat(ctx, "model-v1", fmt.Sprintf("w%d n%d", i, n), n%3 == 0, "")
				bad := err != nil || res.status != 200
				if k := killedAt.Load(); k != 0 && start > k {
					afterKill.Add(1)
					if bad {
						failedLate.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d err %v body %s", res.status, err, res.body))
					}
				}
				if bad {
					failedAny.Add(1)
				}
			}
		})
	}
	victim := e.pools["blue"][0]
	waitFor(t, "load", 10*time.Second, func() bool { return e.gw.Controller().Status().Pools["blue"].InFlight > 0 })
	victim.kill()
	killedAt.Store(time.Now().UnixNano())
	waitFor(t, "requests after the kill", 20*time.Second, func() bool { return afterKill.Load() >= 500 })

	st := e.gw.Controller().Status()
	if r := st.Pools["blue"].Replicas[indexOf(st.Pools["blue"], victim.URL())]; r.Healthy {
		// Passive ejection needs a few refused connections in a row; if no
		// request hit the dead replica enough yet, active checks must.
		e.gw.Checker().Tick(ctx)
		e.gw.Checker().Tick(ctx)
		st = e.gw.Controller().Status()
		if st.Pools["blue"].Replicas[indexOf(st.Pools["blue"], victim.URL())].Healthy {
			t.Errorf("killed replica still healthy: %+v", st.Pools["blue"])
		}
	}

	back := victim.restart()
	for range 2 { // rise = 2
		e.gw.Checker().Tick(ctx)
	}
	st = e.gw.Controller().Status()
	if r := st.Pools["blue"].Replicas[indexOf(st.Pools["blue"], back.URL())]; !r.Healthy {
		t.Errorf("restarted replica not readmitted: %+v", r)
	}
	before := back.mock.Stats().Requests
	waitFor(t, "traffic on the readmitted replica", 20*time.Second, func() bool { return back.mock.Stats().Requests > before+10 })
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests started after the kill, %d failed (%d failed in all)", afterKill.Load(), failedLate.Load(), failedAny.Load())
	if failedLate.Load() > 0 {
		t.Fatalf("%d requests that started after the kill failed; first: %v", failedLate.Load(), firstErr.Load())
	}
}

func indexOf(p api.Pool, url string) int {
	for i, r := range p.Replicas {
		if r.URL == url {
			return i
		}
	}
	panic("replica " + url + " not in pool " + p.Name)
}

// TestPromoteRefused: a standby with no healthy replica, or one serving
// the wrong model, is refused with 409 and the live pool stays.
func TestPromoteRefused(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(e *env)
		want   string
	}{
		{"no healthy replica", func(e *env) {
			for _, r := range e.pools["green"] {
				r.mock.SetFailHealth(true)
			}
			e.gw.Checker().Tick(context.Background())
			e.gw.Checker().Tick(context.Background())
		}, "no healthy replica"},
		{"wrong model", func(e *env) {
			for _, r := range e.pools["green"] {
				r.kill()
				r2 := startReplica(t, mockllm.Config{Model: "someone-elses-model"}, r.addr)
				_ = r2
			}
		}, `cannot serve model "model-v2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			before := e.gw.Controller().Status()
			tt.break_(e)
			_, err := e.admin.Promote(context.Background())
			var ae *api.Error
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
				t.Fatalf("promote: got %v, want a 409", err)
			}
			if !strings.Contains(ae.Message, tt.want) {
				t.Errorf("refusal %q does not say %q", ae.Message, tt.want)
			}
			after := e.gw.Controller().Status()
			if after.Live != "blue" || after.Revision != before.Revision {
				t.Errorf("refused promote changed state: live %s rev %d -> %d", after.Live, before.Revision, after.Revision)
			}
			res, err := e.chat(context.Background(), "model-v1", "still blue?", false, "")
			if err != nil || res.pool != "blue" {
				t.Errorf("traffic after refusal: %+v %v", res, err)
			}
		})
	}
}

// TestAdminAuth: every admin call needs the token; a refused call changes
// nothing.
func TestAdminAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct{ name, header string }{
		{"no token", ""},
		{"wrong token", "Bearer nope"},
		{"wrong scheme", "Basic " + testToken},
		{"token prefix", "Bearer " + testToken[:4]},
	} {
		for _, ep := range []string{"GET /api/v1/status", "POST /api/v1/promote", "POST /api/v1/rollback", "GET /api/v1/history", "GET /api/v1/nope"} {
			method, path, _ := strings.Cut(ep, " ")
			req, _ := http.NewRequest(method, e.admin.BaseURL+path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body api.ErrorResponse
			decodeErr := jsonDecode(resp, &body)
			if resp.StatusCode != http.StatusUnauthorized || decodeErr != nil || body.Error.Message == "" {
				t.Errorf("%s %s: status %d, body %+v (%v); want 401 with a JSON message", tc.name, ep, resp.StatusCode, body, decodeErr)
			}
		}
	}
	if st := e.gw.Controller().Status(); st.Live != "blue" || st.Revision != 1 {
		t.Errorf("unauthorized calls changed state: %+v", st)
	}
	// With the token: unknown endpoint is a JSON 404, bad limit a JSON 400.
	for path, want := range map[string]int{"/api/v1/nope": 404, "/api/v1/history?limit=x": 400} {
		req, _ := http.NewRequest(http.MethodGet, e.admin.BaseURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body api.ErrorResponse
		if err := jsonDecode(resp, &body); err != nil || resp.StatusCode != want || body.Error.Message == "" {
			t.Errorf("GET %s: status %d body %+v err %v, want %d with a message", path, resp.StatusCode, body, err, want)
		}
	}
}

// TestRollbackWithoutPrevious is refused: there is nothing to go back to.
func TestRollbackWithoutPrevious(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, err := e.admin.Rollback(context.Background())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "nothing_to_roll_back" {
		t.Fatalf("rollback on a fresh gateway: %v, want 409 nothing_to_roll_back", err)
	}
}

// TestNoHealthyReplica answers 503 in the OpenAI shape at once.
func TestNoHealthyReplica(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, r := range e.pools["blue"] {
		r.kill()
	}
	for range 2 {
		e.gw.Checker().Tick(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := e.chat(ctx, "", "anyone?", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.status != 503 || res.pool != "blue" {
		t.Fatalf("status %d pool %q, want 503 from blue", res.status, res.pool)
	}
	assertOpenAIError(t, res.body, "no_healthy_replica")
}

// TestRetryOn503 sends a request that one replica answers 503 (a model
// still loading) to the other replica of the same pool.
func TestRetryOn503(t *testing.T) {
	var loadingHits atomic.Int64
	loading := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
		case "/v1/models":
			fmt.Fprint(w, `{"object":"list","data":[{"id":"model-v1"}]}`)
		default:
			loadingHits.Add(1)
			http.Error(w, `{"error":{"message":"loading"}}`, http.StatusServiceUnavailable)
		}
	}))
	defer loading.Close()
	e := newEnv(t, envOptions{edit: func(c *config.Config) {
		c.Pools["blue"].Replicas[0] = loading.URL
		c.Balancer = "round_robin"
	}})
	for i := range 10 {
		res, err := e.chat(context.Background(), "model-v1", fmt.Sprintf("p%d", i), i%2 == 0, "")
		if err != nil || res.status != 200 {
			t.Fatalf("request %d: %+v %v", i, res, err)
		}
		if res.replica == loading.URL {
			t.Fatalf("answer came from the loading replica")
		}
	}
	if loadingHits.Load() == 0 {
		t.Fatal("round robin never tried the loading replica: the test proves nothing")
	}
}

// TestStreamNotBuffered: each chunk the replica flushes reaches the client
// before the replica writes the next one.
func TestStreamNotBuffered(t *testing.T) {
	next := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			return
		case "/v1/models":
			fmt.Fprint(w, `{"object":"list","data":[{"id":"model-v1"}]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next: // the client saw this chunk
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer backend.Close()
	e := newEnv(t, envOptions{replicas: 1, edit: func(c *config.Config) { c.Pools["blue"].Replicas[0] = backend.URL }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.traffic+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("X-Accel-Buffering"); got != "no" {
		t.Errorf("X-Accel-Buffering = %q, want no", got)
	}
	buf := make([]byte, 4096)
	for i := range 5 {
		n, err := resp.Body.Read(buf) // blocks until chunk i arrives; the backend waits for us
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if want := fmt.Sprintf("t%d ", i); !strings.Contains(string(buf[:n]), want) {
			t.Fatalf("chunk %d = %q, want it to hold %q alone", i, buf[:n], want)
		}
		next <- struct{}{}
	}
}

// TestClientDisconnectCancelsUpstream: a client that goes away frees the
// replica's sequence at once, streaming or not.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			e := newEnv(t, envOptions{replicas: 1, mock: mockllm.Config{TTFT: time.Minute, Tokens: 4}})
			m := e.pools["blue"][0].mock
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := e.chat(ctx, "model-v1", "slow", stream, ""); done <- err }()
			waitFor(t, "the replica to start generating", 10*time.Second, func() bool { return m.Stats().Running == 1 })
			cancel()
			<-done
			waitFor(t, "the replica to stop generating", 10*time.Second, func() bool { return m.Stats().Running == 0 })
			waitFor(t, "in-flight to drop", 10*time.Second, func() bool { return e.gw.Controller().Status().Pools["blue"].InFlight == 0 })
		})
	}
}
