package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/agent"
)

// TestRestoreCarriedOnAfterGatewayKill: the gateway killed (kill -9)
// while it brings a shrunk retained pool back to full size — the restore
// a rollback waits for, or the background one after `rollback --now` —
// finds the restore in its state after the restart: it asks the agent
// again with the same keys (the replica already starting is answered, no
// second one is started) and adopts it into the pool once it runs, so the
// agent runs exactly the replicas the state knows and no GPU is leaked.
// Before the fix the restored replica kept running on the agent, unknown
// to the state.
func TestRestoreCarriedOnAfterGatewayKill(t *testing.T) {
	for _, now := range []bool{false, true} {
		t.Run(fmt.Sprintf("now=%v", now), func(t *testing.T) {
			gate := filepath.Join(t.TempDir(), "loaded")
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			a := startAgent(t, 4, gate)
			c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
				blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
				extra: fmt.Sprintf(`rollout:
  retention: 1h
  drain_timeout: 5s
  retention_mode: shrink
  shrink_to: 1
  warmup: {requests: []}
agents:
  - {name: gpu-a, url: "http://%s", token_file: %s}
launch: {replicas: 2, gpus_per_replica: 1, ready_timeout: 1m}
`, a.addr, a.tok)}
			cfg := c.write(t)
			g := &capacityGateway{agent: a.c, listen: c.listen, env: []string{"CUTOVER_ADMIN_TOKEN=secret"}, admin: []string{"--admin", "http://" + c.admin}}
			g.p = start(t, g.env, "serve", "--config", cfg)
			g.client = &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
			waitAdmin(t, g.p, g.client)
			g.deployPromote(t, "model-v2") // into green
			g.retire(t)
			g.deployPromote(t, "model-v3") // into blue; green (model-v2) retained
			g.waitNote(t, "retained pool green shrunk to 1 of 2 replica(s)")

			// The restore's replica does not serve until the gate is back.
			if err := os.Remove(gate); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if now {
				if _, err := g.client.RollbackWith(ctx, api.RollbackRequest{Now: true}); err != nil {
					t.Fatalf("rollback --now: %v", err)
				}
			} else {
				go func() { _, _ = g.client.Rollback(ctx) }() // cut by the kill
			}
			restoring := awaitAgentReplica(t, a.c, "model-v2", agent.StateStarting)
			awaitRestoreInStatus(t, g.client, "green", restoring.ID)

			_ = g.p.cmd.Process.Kill()
			g.p.exitCode(t, 10*time.Second)
			g.p = start(t, g.env, "serve", "--config", cfg)
			waitAdmin(t, g.p, g.client)
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			g.waitHealthy(t, "green", 2)
			st, err := g.client.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(st.Pools["green"].Replicas, func(r api.Replica) bool { return r.URL == a.c.ReplicaURL(restoring) }) {
				t.Fatalf("green %v does not hold the restored replica %s", st.Pools["green"].Replicas, a.c.ReplicaURL(restoring))
			}
			// Exactly the pools' replicas run: 2 of model-v2 (one the
			// restore's, started once), 2 of model-v3; no GPU free.
			v2 := g.replicas(t, "model-v2", agent.StateRunning)
			ids := []string{}
			for _, r := range v2 {
				ids = append(ids, r.ID)
			}
			if len(v2) != 2 || !slices.Contains(ids, restoring.ID) {
				t.Fatalf("model-v2 replicas running %v, want 2 with the restore's %s", ids, restoring.ID)
			}
			all, err := a.c.Replicas(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range all {
				if r.State != agent.StateExited && r.State != agent.StateRunning {
					t.Errorf("agent replica %s (%s) is %s", r.ID, r.Model, r.State)
				}
			}
			if free := g.freeGPUs(t); free != 0 {
				t.Fatalf("%d GPU(s) free, want 0 (2 live, 2 restored)", free)
			}
			if now {
				return
			}
			// The pool is whole again: the rollback switches at once.
			sw, err := g.client.Rollback(ctx)
			if err != nil || sw.Live != "green" || sw.Restored != 0 {
				t.Fatalf("rollback after the restart: %+v %v; want green live without restoring", sw, err)
			}
			if _, restore := g.events(t, "rollback", "restore"); restore == nil || !strings.Contains(restore.Reason, "did not finish (the controller restarted)") {
				t.Fatalf("restore event %+v", restore)
			}
		})
	}
}

// awaitAgentReplica waits until the agent has a replica of model in
// state, and returns it.
func awaitAgentReplica(t *testing.T, c *agent.Client, model string, state agent.State) agent.Replica {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := c.Replicas(context.Background())
		for _, r := range rs {
			if r.Model == model && r.State == state {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never had a replica of %s %s: %+v %v", model, state, rs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitRestoreInStatus waits until GET /api/v1/status shows the restore
// of pool in progress with replica id among its replicas.
func awaitRestoreInStatus(t *testing.T, c *api.Client, pool, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil {
			for _, r := range st.Restores {
				if r.Pool == pool && r.Wanted == 1 && slices.ContainsFunc(r.Replicas, func(s api.LaunchReplica) bool { return s.ID == id }) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status never showed the restore of %s with replica %s: %+v %v", pool, id, st.Restores, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
