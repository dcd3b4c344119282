package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/agent"
)

// TestLaunchCarriedOnAfterGatewayKill: the gateway killed (kill -9) while
// a deploy's replicas load carries the launch on after its restart: the
// status shows the persisted launch replica by replica, the agent is asked
// again with the same keys (no replica started twice, none leaked: the
// agent has exactly the two, on its two GPUs) and the deployment is made
// once they run.
func TestLaunchCarriedOnAfterGatewayKill(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "loaded")
	a := startAgent(t, 2, gate)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf(`rollout:
  warmup: {requests: []}
agents:
  - {name: gpu-a, url: "http://%s", token_file: %s}
launch: {replicas: 2, ready_timeout: 2m}
`, a.addr, a.tok)}
	cfg := c.write(t)
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", cfg)
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { _, _ = client.Deploy(ctx, api.DeployRequest{Model: "model-v3"}) }() // cut by the kill
	started := func(s *api.Status) bool {
		if s.Launch == nil || len(s.Launch.Replicas) != 2 {
			return false
		}
		for _, r := range s.Launch.Replicas {
			if r.State != "started" || r.ID == "" {
				return false
			}
		}
		return true
	}
	before := awaitGatewayStatus(t, client, "the launch's 2 replicas started, holding 4 GPU-s", func(s *api.Status) bool {
		return started(s) && s.Cost != nil && s.Cost.Of("green", "candidate").GPUSeconds >= 4
	})

	_ = p.cmd.Process.Kill()
	p.exitCode(t, 10*time.Second)
	p = start(t, env, "serve", "--config", cfg)
	waitAdmin(t, p, client)
	after := awaitGatewayStatus(t, client, "the launch carried on", started)
	// The GPU-seconds are in the state: the kill lost none of them.
	if after.Cost == nil || after.Cost.Of("green", "candidate").GPUSeconds < before.Cost.Of("green", "candidate").GPUSeconds {
		t.Fatalf("GPU accounting after the kill %+v, before %+v: want no less", after.Cost, before.Cost)
	}
	ids := func(s *api.Status) []string {
		var out []string
		for _, r := range s.Launch.Replicas {
			out = append(out, r.ID)
		}
		return slices.Sorted(slices.Values(out))
	}
	if !slices.Equal(ids(before), ids(after)) {
		t.Fatalf("launch replicas %v after the restart, want the same %v", ids(after), ids(before))
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := waitDeployment(t, client, "ready", 60*time.Second)
	if d.Model != "model-v3" || len(d.Replicas) != 2 {
		t.Fatalf("deployment %+v, want model-v3 on 2 replicas", d)
	}
	rs, err := a.c.Replicas(context.Background())
	if err != nil || len(rs) != 2 {
		t.Fatalf("agent replicas %+v, %v: want exactly the 2 launched", rs, err)
	}
	var got []string
	for _, r := range rs {
		if r.State != agent.StateRunning {
			t.Errorf("replica %s is %s, want running", r.ID, r.State)
		}
		got = append(got, r.ID)
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), ids(before)) {
		t.Fatalf("agent replicas %v, want the launch's %v", got, ids(before))
	}
	if free, total, err := a.c.FreeGPUs(context.Background()); err != nil || free != 0 || total != 2 {
		t.Fatalf("agent GPUs free %d of %d, %v; want 0 of 2", free, total, err)
	}
	if st, err := client.Status(context.Background()); err != nil || st.Launch != nil || st.Launching != "" {
		t.Fatalf("status after the deployment still shows a launch: %+v %v", st, err)
	}
}
