package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// sleepyPool starts n simulated vLLM replicas of model with sleep mode on
// (as with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1).
func sleepyPool(t *testing.T, model string, n int, wake time.Duration) ([]*mockllm.Server, []string) {
	t.Helper()
	var ms []*mockllm.Server
	var urls []string
	for range n {
		m, err := mockllm.New(mockllm.Config{Model: model, Tokens: 4,
			Sleep: mockllm.SleepConfig{Enabled: true, DevMode: true, WakeDelay: wake}})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		urls = append(urls, mockPoolWith(t, m))
	}
	return ms, urls
}

// TestRetentionSleepRollbackUnderLoad: with rollout.retention_mode: sleep
// the old pool sleeps during retention, and a rollback under load wakes it
// before the switch: no request fails, none reaches a sleeping replica.
func TestRetentionSleepRollbackUnderLoad(t *testing.T) {
	blueMs, blue := sleepyPool(t, "model-v1", 2, 300*time.Millisecond)
	_, v3 := sleepyPool(t, "model-v3", 2, 0)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: blue, green: mockPool(t, "model-v2", 1),
		extra: "rollout:\n  retention: 1h\n  retention_mode: sleep\n  wake_timeout: 30s\n  warmup: {requests: []}\n"}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	ctx := context.Background()
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: v3}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	if _, err := client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	// The status notes the sleep once every replica was asked.
	asleep := func() bool {
		st, err := client.Status(ctx)
		return err == nil && st.Deployment != nil && strings.Contains(st.Deployment.Waiting, "retained pool blue asleep (2 replicas")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !asleep() {
		if time.Now().After(deadline) {
			st, _ := client.Status(ctx)
			t.Fatalf("the retained pool never fell asleep: %+v\n%s", st.Deployment, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range blueMs {
		if !m.SleepStats().Sleeping {
			t.Fatal("status says asleep, a replica is awake")
		}
	}
	code, out, _ := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "status", "--admin", "http://"+c.admin)
	if code != 0 || strings.Count(out, "asleep") < 3 { // the two replicas and the deployment's note
		t.Fatalf("cutover status (exit %d) does not show the replicas asleep:\n%s", code, out)
	}

	// Load through the gateway while rolling back.
	l := startLoad(c.listen)
	l.waitSent(t, 20)
	sw, err := client.Rollback(ctx)
	if err != nil || sw.Live != "blue" || sw.Woke != 2 {
		t.Fatalf("rollback: %+v %v; want blue live after waking 2", sw, err)
	}
	for _, m := range blueMs {
		if m.SleepStats().Sleeping {
			t.Fatal("rolled back onto a sleeping replica")
		}
	}
	l.waitSent(t, 20)
	l.end(t)
	if got := poolOf(t, c.listen); got != "blue" {
		t.Fatalf("traffic on %s after the rollback", got)
	}
	evs, err := client.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs.Events {
		if e.Action == "rollback" && strings.Contains(e.Reason, "after waking 2 replica(s) of blue in ") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no rollback in the history carrying the wake time: %+v", evs)
	}
}
