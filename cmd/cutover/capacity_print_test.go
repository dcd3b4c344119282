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
