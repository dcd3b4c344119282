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
