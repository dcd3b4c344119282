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
			{URL: "http://a:8000", Healthy: true, Engine: &api.EngineMetrics{Waiting: 2, Running: 7, KVCacheUsage: 0.41, PrefixCacheHitRate: 0.625}},
			{URL: "http://b:8000", Healthy: true},
		}},
	}}
	var b bytes.Buffer
	printStatus(&b, s)
	out := b.String()
	if !strings.Contains(out, "queue 2, running 7, KV 41%, prefix hits 62%") {
		t.Fatalf("no engine load in:\n%s", out)
	}
	if strings.Count(out, "queue ") != 1 {
		t.Fatalf("a replica without engine metrics got some:\n%s", out)
	}
}
