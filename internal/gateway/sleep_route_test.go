package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestRetainedPoolAsleepGetsNoRequest: with retention_mode sleep, a
// request naming the retained pool (the pool header with its token, the
// preview listener) is answered 503 no_healthy_replica by the gateway and
// never reaches a sleeping replica (which answered vLLM's 503
// ModelSleepingError); after a rollback woke the pool, the header reaches
// it again.
func TestRetainedPoolAsleepGetsNoRequest(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "pool-token")
	if err := os.WriteFile(tokenFile, []byte("pool-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sleepy := mockllm.Config{Tokens: 4, Sleep: mockllm.SleepConfig{Enabled: true, DevMode: true, WakeDelay: 20 * time.Millisecond}}
	e := newEnv(t, envOptions{modelName: "llama", mock: sleepy, edit: func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Health.Timeout = config.Duration(time.Second)
		c.Rollout.Retention = config.Duration(time.Hour)
		c.Rollout.RetentionMode = "sleep"
		c.Routing.PoolHeader = "X-Cutover-Pool"
		c.Routing.PoolHeaderTokenFile = tokenFile
		c.Preview.Listen = "127.0.0.1:0"
	}})
	spare := []*replica{startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")}
	e.deployReady(t, spare)
	ctx := context.Background()
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	blue := e.pools["blue"]
	waitFor(t, "blue asleep", 10*time.Second, func() bool {
		for _, r := range blue {
			if !r.mock.SleepStats().Sleeping {
				return false
			}
		}
		return true
	})
	before := blue[0].mock.Stats().Requests + blue[1].mock.Stats().Requests
	ask := func(url string, header bool) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions",
			strings.NewReader(`{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`))
		req.Header.Set("Content-Type", "application/json")
		if header {
			req.Header.Set("X-Cutover-Pool", "blue")
			req.Header.Set("X-Cutover-Pool-Token", "pool-secret")
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Cutover-Pool"), string(b)
	}
	for _, c := range []struct {
		name, url string
		header    bool
	}{
		{"pool header", e.traffic, true},
		{"preview listener", "http://" + e.gw.PreviewAddr(), false},
	} {
		code, pool, body := ask(c.url, c.header)
		if code != http.StatusServiceUnavailable || pool != "blue" || !strings.Contains(body, `"code":"no_healthy_replica"`) {
			t.Errorf("%s to the sleeping blue: %d %s %s, want 503 no_healthy_replica from the gateway", c.name, code, pool, body)
		}
	}
	if after := blue[0].mock.Stats().Requests + blue[1].mock.Stats().Requests; after != before {
		t.Errorf("the sleeping replicas got %d completion requests", after-before)
	}
	if code, pool, _ := ask(e.traffic, false); code != http.StatusOK || pool != "green" {
		t.Errorf("a request by the weights: %d %s, want 200 from green", code, pool)
	}
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if code, pool, body := ask(e.traffic, true); code != http.StatusOK || pool != "blue" {
		t.Errorf("pool header to blue after the rollback woke it: %d %s %s", code, pool, body)
	}
}

// TestSleepWaitsForTheOldPoolsRequests: with retention_mode sleep, the
// promotion's /sleep (which vLLM answers by aborting what it runs) waits
// for the requests and streams the old pool still serves: they end whole,
// and the pool sleeps after them.
func TestSleepWaitsForTheOldPoolsRequests(t *testing.T) {
	e := sleepEnv(t, mockllm.Config{Tokens: 30, ITL: 40 * time.Millisecond}, nil)
	ctx := context.Background()
	type answer struct {
		prompt string
		res    result
		err    error
	}
	answers := make(chan answer, 4)
	for i := range 4 {
		go func() {
			prompt := fmt.Sprintf("long %d", i)
			res, err := e.chat(ctx, "llama", prompt, i%2 == 0, "")
			answers <- answer{prompt, res, err}
		}()
	}
	blue := e.pools["blue"]
	waitFor(t, "4 requests on blue", 10*time.Second, func() bool { return e.gw.Controller().Status().Pools["blue"].InFlight == 4 })
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		a := <-answers
		if want := mockllm.Answer("model-v1", a.prompt, 30); a.err != nil || a.res.status != http.StatusOK || a.res.pool != "blue" || a.res.text != want {
			t.Errorf("a request on blue across the promotion: %+v, %v; want a whole answer from blue", a.res, a.err)
		}
	}
	waitFor(t, "blue asleep after its requests", 10*time.Second, func() bool {
		return blue[0].mock.SleepStats().Sleeping && blue[1].mock.SleepStats().Sleeping
	})
}

// TestRefusedRollbackPutsThePoolBackToSleep: a rollback wakes the retained
// pool, then is refused (its preflight completion fails): the pool is
// retained as before, so it goes back to sleep and the status says so,
// rather than staying awake (and paid for) with a status saying otherwise.
func TestRefusedRollbackPutsThePoolBackToSleep(t *testing.T) {
	e := sleepEnv(t, mockllm.Config{Tokens: 4}, nil)
	ctx := context.Background()
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	blue := e.pools["blue"]
	asleep := func() bool { return blue[0].mock.SleepStats().Sleeping && blue[1].mock.SleepStats().Sleeping }
	waitFor(t, "blue asleep", 10*time.Second, asleep)
	for _, r := range blue {
		r.mock.SetErrorRate(1)
	}
	if _, err := e.admin.Rollback(ctx); err == nil {
		t.Fatal("a rollback onto replicas failing every completion was accepted")
	}
	waitFor(t, "blue asleep again, and the status saying so", 10*time.Second, func() bool {
		st, err := e.admin.Status(ctx)
		return err == nil && asleep() && st.Deployment != nil && strings.Contains(st.Deployment.Waiting, "asleep")
	})
}

// TestRollbackDoesNotWaitForAHungSleep: the old pool's /sleep hangs (a
// replica stuck offloading its weights); a rollback cancels it and wakes
// the pool rather than waiting out the sleep calls' timeout (here an hour).
func TestRollbackDoesNotWaitForAHungSleep(t *testing.T) {
	e := sleepEnv(t, mockllm.Config{Tokens: 4, Sleep: mockllm.SleepConfig{SleepDelay: time.Hour}},
		func(c *config.Config) { c.Rollout.WakeTimeout = config.Duration(time.Hour) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	blue := e.pools["blue"]
	waitFor(t, "blue's /sleep under way", 10*time.Second, func() bool {
		return blue[0].mock.SleepStats().Transitioning && blue[1].mock.SleepStats().Transitioning
	})
	res, err := e.admin.Rollback(ctx)
	if err != nil || res.Live != "blue" {
		t.Fatalf("rollback while blue's /sleep hangs: %+v, %v", res, err)
	}
	if code, pool, body := chatPool(t, e); code != http.StatusOK || pool != "blue" {
		t.Fatalf("after the rollback: %d %s %s, want 200 from blue", code, pool, body)
	}
}

// chatPool sends a small chat completion and returns the status, the
// pool that answered and the body.
func chatPool(t *testing.T, e *env) (int, string, string) {
	t.Helper()
	res, err := e.chat(context.Background(), "llama", "hi", false, "")
	if err != nil {
		t.Fatal(err)
	}
	return res.status, res.pool, res.body
}

// sleepEnv is a gateway with retention_mode sleep over replicas running
// mock (with vLLM's sleep mode and its routes), edit applied to its
// config, and a deployment of model-v3 ready to promote.
func sleepEnv(t *testing.T, mock mockllm.Config, edit func(*config.Config)) *env {
	t.Helper()
	mock.Sleep.Enabled, mock.Sleep.DevMode = true, true
	e := newEnv(t, envOptions{modelName: "llama", mock: mock, edit: func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Retention = config.Duration(time.Hour)
		c.Rollout.RetentionMode = "sleep"
		if edit != nil {
			edit(c)
		}
	}})
	e.deployReady(t, []*replica{startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")})
	return e
}
