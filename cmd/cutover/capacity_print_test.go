package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestStatusPrintsRestoresInProgress: `cutover status` shows a shrunk
// pool's restore in progress with its replicas, as it does a launch.
func TestStatusPrintsRestoresInProgress(t *testing.T) {
	s := &api.Status{Live: "green", Pools: map[string]api.Pool{}, Restores: []api.Restore{{
		Pool: "blue", Deployment: "d-7", Model: "m1", Since: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), Wanted: 2,
		Replicas: []api.LaunchReplica{
			{Agent: "gpu-a", ID: "r1", URL: "http://10.0.0.1:8000", GPUs: 1, State: "ready"},
			{Agent: "gpu-b", State: "asked"},
		},
	}}}
	var b bytes.Buffer
	printStatus(&b, s)
	out := b.String()
	for _, want := range []string{
		"restore of blue to full size (2 replica(s) of m1, deployment d-7, for the rollback)",
		"gpu-a      ready    r1 http://10.0.0.1:8000 (1 GPU(s))",
		"gpu-b      asked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

// TestAgentsLineShowsReplicasAsleep: a replica the gateway put to sleep
// (through the replica's own API, so its agent still says running) reads
// asleep on the agents line, as on its pool's.
func TestAgentsLineShowsReplicasAsleep(t *testing.T) {
	s := &api.Status{Live: "green", Pools: map[string]api.Pool{
		"blue": {Name: "blue", Replicas: []api.Replica{{URL: "http://10.0.0.1:8000", Healthy: true, Asleep: true}}},
	}, Agents: []api.AgentStatus{{Name: "gpu-a", Up: true, GPUs: 4, Replicas: []api.AgentReplica{
		{ID: "r1", State: "running", URL: "http://10.0.0.1:8000"},
		{ID: "r2", State: "running", URL: "http://10.0.0.2:8000"},
	}}}}
	var b bytes.Buffer
	printStatus(&b, s)
	if out := b.String(); !strings.Contains(out, "replicas: r1 asleep, r2 running") {
		t.Errorf("agents line:\n%s", out)
	}
}
