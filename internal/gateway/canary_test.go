package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/validation"
)

// canaryEnv is a gateway with the canary strategy at one step of weight
// percent held for an hour, judged by the error-rate gate alone every
// 100 ms.
func canaryEnv(t *testing.T, weight int) *env {
	t.Helper()
	return newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 4, Seed: 1}, edit: func(c *config.Config) {
		c.Rollout.Affinity.Header = "X-Session-Id"
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = nil
		c.Rollout.Strategy = config.StrategyCanary
		c.Rollout.Canary.Steps = []config.CanaryStep{{Weight: weight, Pause: config.Duration(time.Hour)}}
		v := &c.Validation
		v.Interval = config.Duration(100 * time.Millisecond)
		v.FailureLimit = 3
		onlyGate(c, validation.GateErrorRate)
		v.Gates.ErrorRate.MinSamples = 20
	}})
}

// TestCanaryShareEndToEnd: at 25 % about a quarter of new requests
// (streams included) are served by the candidate pool, named by
// X-Cutover-Pool; none fails; the status shows the weights and step.
func TestCanaryShareEndToEnd(t *testing.T) {
	e := canaryEnv(t, 25)
	green := map[string]bool{}
	for _, r := range deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2}) {
		green[r.URL()] = true
	}
	d := e.waitPhase(t, "canary", 30*time.Second)
	if d.Canary == nil || d.Canary.Step != 1 || d.Canary.Weight != 25 {
		t.Fatalf("canary: %+v", d.Canary)
	}
	if w := e.gw.Controller().Status().Weights; w["blue"] != 75 || w["green"] != 25 {
		t.Fatalf("status weights %v", w)
	}
	const n = 400
	served := map[string]int{}
	for i := range n {
		res, err := e.chat(context.Background(), "llama", fmt.Sprintf("q%d", i), i%2 == 0, "")
		if err != nil || res.status != 200 {
			t.Fatalf("request %d: %d %v %s", i, res.status, err, res.body)
		}
		if (res.pool == "green") != green[res.replica] {
			t.Fatalf("X-Cutover-Pool %s but replica %s", res.pool, res.replica)
		}
		served[res.pool]++
	}
	// 25 % of 400 is 100, sigma 8.7: 60..140 is beyond 4.5 sigma.
	if g := served["green"]; g < 60 || g > 140 || served["blue"]+g != n {
		t.Fatalf("served %v, want about 100 of %d by green", served, n)
	}
}

// TestCanaryFailingCandidateDropsToZero: a candidate failing half its
// requests is failed by the error-rate gate within failure_limit
// evaluations, its weight drops to 0 and every request then goes to the
// live pool.
func TestCanaryFailingCandidateDropsToZero(t *testing.T) {
	e := canaryEnv(t, 50)
	l := startLoad(e, 4)
	defer l.end()
	deployV2(t, e, mockllm.Config{Tokens: 4, ErrorRate: 0.5, Seed: 3})
	d := e.waitPhase(t, "failed", 60*time.Second)
	l.end()
	if !strings.Contains(d.Reason, "gate error_rate") || d.Canary == nil || d.Canary.Weight != 0 {
		t.Fatalf("failed: %s %+v", d.Reason, d.Canary)
	}
	if w := e.gw.Controller().Status().Weights; w != nil {
		t.Fatalf("weights after the failure: %v", w)
	}
	for i := range 50 {
		res, err := e.chat(context.Background(), "llama", fmt.Sprintf("after%d", i), i%2 == 0, "")
		if err != nil || res.status != 200 || res.pool != "blue" {
			t.Fatalf("request %d after the failure: %d %s %v", i, res.status, res.pool, err)
		}
	}
}

// TestCanaryUnderLoadStepsAndPromotes: under load with streams, the
// steps advance as the clock passes their pauses and the gates pass, and
// promote completes; no request fails and no stream is cut.
func TestCanaryUnderLoadStepsAndPromotes(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 6, ITL: time.Millisecond, Seed: 1}, edit: func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = nil
		c.Rollout.Strategy = config.StrategyCanary
		c.Rollout.Canary.Steps = []config.CanaryStep{{Weight: 10, Pause: config.Duration(time.Minute)}, {Weight: 50, Pause: config.Duration(time.Minute)}}
		c.Validation.Interval = config.Duration(100 * time.Millisecond)
		onlyGate(c, validation.GateErrorRate)
		c.Validation.Gates.ErrorRate.MinSamples = 10
	}})
	l := startLoad(e, 4)
	defer l.end()
	deployV2(t, e, mockllm.Config{Tokens: 6, ITL: time.Millisecond, Seed: 2})
	e.waitPhase(t, "canary", 30*time.Second)
	e.clock.advance(time.Minute)
	waitFor(t, "step 2", 30*time.Second, func() bool {
		d := e.gw.Controller().Status().Deployment
		return d.Canary != nil && d.Canary.Step == 2 && d.Canary.Weight == 50
	})
	e.clock.advance(time.Minute)
	e.waitPhase(t, "ready", 30*time.Second)
	if w := e.gw.Controller().Status().Weights; w["green"] != 50 {
		t.Fatalf("ready after the steps: weights %v", w)
	}
	if _, err := e.admin.Promote(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, "promoted", 10*time.Second)
	l.end()
	if l.failed.Load() > 0 || l.total.Load() == 0 {
		t.Fatalf("%d of %d requests failed: %v", l.failed.Load(), l.total.Load(), l.first.Load())
	}
	if st := e.gw.Controller().Status(); st.Live != "green" || st.Weights != nil {
		t.Fatalf("after promote: live %s weights %v", st.Live, st.Weights)
	}
}

// TestCanaryAffinityEndToEnd: with rollout.affinity.header, every request
// of a session goes to the same version while the weight holds; requests
// without the header are still spread.
func TestCanaryAffinityEndToEnd(t *testing.T) {
	e := canaryEnv(t, 50)
	deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2})
	e.waitPhase(t, "canary", 30*time.Second)
	send := func(session string) string {
		req, _ := http.NewRequest(http.MethodPost, e.traffic+"/v1/chat/completions", strings.NewReader(`{"model":"llama","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		if session != "" {
			req.Header.Set("X-Session-Id", session)
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Cutover-Pool")
	}
	versions := map[string]int{}
	for i := range 30 {
		s := fmt.Sprintf("session-%d", i)
		first := send(s)
		versions[first]++
		for range 3 {
			if got := send(s); got != first {
				t.Fatalf("session %s went to %s, then %s", s, first, got)
			}
		}
	}
	if versions["blue"] == 0 || versions["green"] == 0 {
		t.Fatalf("at 50 %% 30 sessions all went one way: %v", versions)
	}
	spread := map[string]int{}
	for range 60 {
		spread[send("")]++
	}
	if spread["blue"] == 0 || spread["green"] == 0 {
		t.Fatalf("requests without a session all went one way: %v", spread)
	}
}

// TestCanaryModelIDGoesToItsVersion: during a canary, a client naming a
// version's own model id (the id the answers carry) gets that version,
// whatever the weights draw; the client-facing name is still split by
// the weights. Before, half of such requests got 404 model_not_found.
func TestCanaryModelIDGoesToItsVersion(t *testing.T) {
	e := canaryEnv(t, 50)
	deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2})
	e.waitPhase(t, "canary", 30*time.Second)
	ctx := context.Background()
	for _, tc := range []struct{ model, pool string }{{"model-v1", "blue"}, {"model-v2b", "green"}} {
		for i := range 20 {
			res, err := e.chat(ctx, tc.model, fmt.Sprintf("q%d", i), i%2 == 0, "")
			if err != nil || res.status != 200 || res.pool != tc.pool || res.model != tc.model {
				t.Fatalf("%s request %d: %d %s %s %v %s, want 200 from %s", tc.model, i, res.status, res.pool, res.model, err, res.body, tc.pool)
			}
		}
	}
	served := map[string]int{}
	for i := range 40 {
		res, err := e.chat(ctx, "llama", fmt.Sprintf("q%d", i), false, "")
		if err != nil || res.status != 200 {
			t.Fatalf("llama request %d: %d %v %s", i, res.status, err, res.body)
		}
		served[res.pool]++
	}
	// 50 % of 40: both pools serve some (all to one is 2^-39).
	if served["blue"] == 0 || served["green"] == 0 {
		t.Fatalf("the client-facing name served %v, want both pools", served)
	}
	if res, err := e.chat(ctx, "gpt-4o", "q", false, ""); err != nil || res.status != 404 {
		t.Fatalf("another name: %d %v, want 404", res.status, err)
	}
}

// TestCanaryAdapterGoesToThePoolThatServesIt: during a canary, a LoRA
// adapter only the candidate serves goes to the candidate whatever the
// weights draw (it got 404 when the draw picked the live pool).
func TestCanaryAdapterGoesToThePoolThatServesIt(t *testing.T) {
	e := canaryEnv(t, 50)
	deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2, LoRAModules: []string{"green-lora"}})
	e.waitPhase(t, "canary", 30*time.Second)
	// The candidate's adapters are known once its checks have read them.
	deadline := time.Now().Add(10 * time.Second)
	for !e.gw.Controller().Pool("green").Lists("green-lora") {
		if time.Now().After(deadline) {
			t.Fatal("green's adapter never listed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 {
		res, err := e.chat(context.Background(), "green-lora", fmt.Sprintf("q%d", i), i%2 == 0, "")
		if err != nil || res.status != 200 || res.pool != "green" || res.model != "green-lora" {
			t.Fatalf("request %d: %d %s %s %v %s, want 200 from green", i, res.status, res.pool, res.model, err, res.body)
		}
	}
}
