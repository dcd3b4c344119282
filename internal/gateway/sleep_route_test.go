package gateway_test

import (
	"context"
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
