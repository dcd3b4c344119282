package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// awaitGatewayStatus polls the status until ok says so, or fails after 60s
// with the last status.
func awaitGatewayStatus(t *testing.T, c *api.Client, what string, ok func(*api.Status) bool) *api.Status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s; last: %+v %v", what, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentDownBlocksPromote: with a real `cutover agent` killed (kill
// -9) after it launched a deployment's replica, the gateway shows the
// agent down (status, metric) and refuses to promote onto the replica it
// cannot see (status.actions says why); the agent restarted re-adopts it,
// the gateway sees it again and the promote goes through. The replica
// and its GPU stay on record throughout.
func TestAgentDownBlocksPromote(t *testing.T) {
	a := startAgent(t, 2, "")
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf(`rollout:
  retention: 1h
  warmup: {requests: []}
agents:
  - {name: gpu-a, url: "%s", token_file: %s}
launch: {replicas: 1, gpus_per_replica: 1, ready_timeout: 1m}
`, "http://"+a.addr, a.tok)}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	admin := []string{"--admin", "http://" + c.admin}
	if code, out, errOut := runCLI(t, env, append([]string{"deploy", "--model", "model-v3"}, admin...)...); code != 0 {
		t.Fatalf("deploy: exit %d\n%s%s", code, out, errOut)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	st := awaitGatewayStatus(t, client, "agent gpu-a up with 1 of 2 GPUs free", func(s *api.Status) bool {
		return len(s.Agents) == 1 && s.Agents[0].Up && s.Agents[0].FreeGPUs == 1
	})
	if got := scrape(t, c.admin, `cutover_agent_up{agent="gpu-a"}`); got != "1" {
		t.Fatalf("cutover_agent_up = %q with the agent up, want 1", got)
	}
	if got := scrape(t, c.admin, `cutover_gpus{pool="green",state="candidate"}`); got != "1" {
		t.Fatalf(`cutover_gpus{pool="green",state="candidate"} = %q, want 1 (the launched replica's GPU)`, got)
	}
	if !st.Actions["promote"].Allowed {
		t.Fatalf("promote refused with the agent up: %+v", st.Actions["promote"])
	}

	a.kill9(t)
	st = awaitGatewayStatus(t, client, "agent gpu-a down", func(s *api.Status) bool { return len(s.Agents) == 1 && !s.Agents[0].Up })
	ag := st.Agents[0]
	if ag.LastError == "" || ag.Since.IsZero() || !ag.NextCheckAt.After(ag.CheckedAt) {
		t.Fatalf("agent down without its error, since or next check: %+v", ag)
	}
	if act := st.Actions["promote"]; act.Allowed || act.Code != "agent_down" || !strings.Contains(act.Reason, "agent gpu-a is down since") {
		t.Fatalf("status.actions.promote with the agent down = %+v, want refused agent_down", act)
	}
	if got := scrape(t, c.admin, `cutover_agent_up{agent="gpu-a"}`); got != "0" {
		t.Fatalf("cutover_agent_up = %q with the agent down, want 0", got)
	}
	code, out, errOut := runCLI(t, env, append([]string{"promote"}, admin...)...)
	if code == 0 || !strings.Contains(errOut, "cannot see through their agents") {
		t.Fatalf("promote with the agent down: exit %d, want refused\n%s%s", code, out, errOut)
	}
	if _, gpus := gpuUsage(st.Cost, "green", "candidate"); gpus != 1 {
		t.Fatalf("with the agent down the launched replica's GPU is off the books: %+v", st.Cost)
	}
	if code, out, _ := runCLI(t, env, append([]string{"status"}, admin...)...); code != 0 || !strings.Contains(out, "gpu-a      DOWN") {
		t.Fatalf("cutover status with the agent down: exit %d\n%s", code, out)
	}

	a.restart(t) // re-adopts the replica
	awaitGatewayStatus(t, client, "agent gpu-a up again, promote allowed", func(s *api.Status) bool {
		return len(s.Agents) == 1 && s.Agents[0].Up && s.Actions["promote"].Allowed
	})
	if _, err := client.Promote(context.Background()); err != nil {
		t.Fatalf("promote once the agent is back: %v", err)
	}
	if pool := poolOf(t, c.listen); pool != "green" {
		t.Fatalf("after promote traffic goes to %s, want green", pool)
	}
}

// gpuUsage returns the GPU-seconds and GPUs of pool/state in c.
func gpuUsage(c *api.Cost, pool, state string) (float64, int) {
	u := c.Of(pool, state)
	return u.GPUSeconds, u.GPUs
}
