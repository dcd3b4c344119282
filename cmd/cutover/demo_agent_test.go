package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestDemoCapacityFlow: the demo runs one local agent with 4 GPUs; its
// hint deploys without --replica; the deploy has the agent start the
// replicas (2 GPUs taken), the promotion puts blue to sleep, the rollback
// wakes it first, and Ctrl-C leaves no replica behind.
func TestDemoCapacityFlow(t *testing.T) {
	listen, admin := freeAddr(t), freeAddr(t)
	env := append(withoutEnv(os.Environ(), "CUTOVER_ADMIN_TOKEN"), "CUTOVER_ADMIN_TOKEN=demo-capacity-token")
	d := startDemo(t, env, "--listen", listen, "--admin-listen", admin, "--traffic", "0", "--ttft", "1ms", "--itl", "1ms")
	t.Cleanup(func() { // before startDemo's kill: Ctrl-C stops the agent's replicas
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
		}
	})
	if !strings.Contains(d.printed, "deploy --admin http://"+admin+" --model "+demoNextModel+"   #") {
		t.Fatalf("the banner lacks the deploy without --replica:\n%s", d.printed)
	}
	ctx := context.Background()
	client := &api.Client{BaseURL: "http://" + admin, Token: d.token}
	st := awaitGatewayStatus(t, client, "the demo's agent up with 4 free GPUs", func(s *api.Status) bool {
		return len(s.Agents) == 1 && s.Agents[0].Up && s.Agents[0].GPUs == 4 && s.Agents[0].FreeGPUs == 4
	})
	if _, gpus := gpuUsage(st.Cost, "blue", "live"); gpus != 2 {
		t.Fatalf("blue's 2 simulated replicas count %d GPUs, want 2 (gpus_per_replica 1): %+v", gpus, st.Cost)
	}
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: demoNextModel}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, client, "ready", 60*time.Second)
	awaitGatewayStatus(t, client, "2 of the agent's GPUs taken by green", func(s *api.Status) bool {
		_, gpus := gpuUsage(s.Cost, "green", "candidate")
		return len(s.Agents) == 1 && s.Agents[0].FreeGPUs == 2 && len(s.Agents[0].Replicas) == 2 && gpus == 2
	})
	if _, err := client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	awaitGatewayStatus(t, client, "blue asleep", func(s *api.Status) bool {
		_, gpus := gpuUsage(s.Cost, "blue", "retained_asleep")
		return gpus == 2
	})
	if _, err := client.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := client.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if e := h.Events[len(h.Events)-1]; e.Action != "rollback" || !strings.Contains(e.Reason, "after waking 2 replica(s) of blue") || e.Cost == nil || e.Cost.OverlapGPUSeconds <= 0 {
		t.Fatalf("last event %+v, want the rollback after the wake, with its GPU-seconds", e)
	}
}
