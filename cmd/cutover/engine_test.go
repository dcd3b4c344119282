package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

func TestStatusPrintsEngineLoad(t *testing.T) {
	s := &api.Status{Live: "blue", Pools: map[string]api.Pool{
		"blue": {Name: "blue", Model: "m", Live: true, Replicas: []api.Replica{
			{URL: "http://a:8000", Healthy: true, Engine: &api.EngineMetrics{Waiting: 2, Running: 7, Batch: 8, BatchKnown: true, KVCacheUsage: 0.41, PrefixCacheHitRate: 0.625}},
			{URL: "http://b:8000", Healthy: true},
			{URL: "http://c:8000", Healthy: true, Engine: &api.EngineMetrics{Running: 3, Batch: 5}},
		}, GatewayQueue: &api.GatewayQueue{Waiting: 1, Held: 11, Dispatched: 8, TimedOut: 1, Canceled: 1, Overflowed: 2, WaitSeconds: 0.5}},
	}}
	var b bytes.Buffer
	printStatus(&b, s)
	out := b.String()
	for _, want := range []string{
		"queue 2, running 7, batch 8, KV 41%, prefix hits 62%",
		"queue 0, running 3, batch ≥5, KV 0%", // the limit not seen yet
		"gateway queue: 1 waiting; 11 held (mean wait 50 ms): 8 dispatched, 1 timed out, 1 canceled; 2 overflowed",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("no %q in:\n%s", want, out)
		}
	}
	if strings.Count(out, "running ") != 2 {
		t.Fatalf("a replica without engine metrics got some:\n%s", out)
	}
}

// TestStatusCountsSleepingReplicas: a pool whose replicas sleep says so
// in its header line, not only "2/2 healthy" (they serve nothing until
// woken).
func TestStatusCountsSleepingReplicas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		asleep []bool
		want   string
	}{
		{"awake", []bool{false, false}, "2/2 healthy  0 in flight"},
		{"asleep", []bool{true, true}, "2/2 healthy, 2 asleep"},
		{"one asleep", []bool{true, false}, "2/2 healthy, 1 asleep"},
		// A live replica a rollback left asleep is out of rotation (not
		// Healthy) while its checks pass: asleep, not UNHEALTHY.
		{"left asleep in the live pool", []bool{true, false}, "1/2 healthy, 1 asleep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outOfRotation := strings.HasPrefix(tc.name, "left")
			p := api.Pool{Name: "green", Model: "m", HealthyReplicas: 2}
			if outOfRotation {
				p.HealthyReplicas = 1
			}
			for i, a := range tc.asleep {
				p.Replicas = append(p.Replicas, api.Replica{URL: "http://r" + string(rune('0'+i)) + ":8000", Healthy: !(a && outOfRotation), Asleep: a})
			}
			var b bytes.Buffer
			printStatus(&b, &api.Status{Live: "blue", Pools: map[string]api.Pool{"green": p}})
			header := strings.SplitN(strings.TrimLeft(b.String()[strings.Index(b.String(), "\ngreen"):], "\n"), "\n", 2)[0]
			if !strings.Contains(header, tc.want) {
				t.Fatalf("header line %q, want %q in it", header, tc.want)
			}
			if strings.Contains(b.String(), "UNHEALTHY") {
				t.Fatalf("a sleeping replica shown UNHEALTHY:\n%s", b.String())
			}
		})
	}
}
