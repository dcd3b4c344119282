package config

import (
	"strings"
	"testing"
	"time"
)

func TestAgentsAndLaunch(t *testing.T) {
	c, err := Parse([]byte(basePools))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Agents) != 0 || c.Launch.Replicas != 1 || c.Launch.GPUsPerReplica != 1 || c.Launch.ReadyTimeout.D() != 20*time.Minute {
		t.Fatalf("defaults: agents %v launch %+v", c.Agents, c.Launch)
	}
	c, err = Parse([]byte(basePools + `agents:
  - {name: gpu-a, url: "http://10.0.0.1:9090", token_file: /etc/cutover/agent-token}
  - {name: gpu-b, url: "https://10.0.0.2:9090", token_file: /etc/cutover/agent-token}
launch: {replicas: 2, gpus_per_replica: 2, ready_timeout: 5m}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Agents) != 2 || c.Agents[1].Name != "gpu-b" || c.Agents[0].URL != "http://10.0.0.1:9090" ||
		c.Launch.Replicas != 2 || c.Launch.GPUsPerReplica != 2 || c.Launch.ReadyTimeout.D() != 5*time.Minute {
		t.Fatalf("parsed: %+v %+v", c.Agents, c.Launch)
	}
	for _, tc := range []struct{ yaml, key, msg string }{
		{"agents: [{url: 'http://a:1', token_file: t}]", "agents[0].name", "must be set"},
		{"agents: [{name: 'a b', url: 'http://a:1', token_file: t}]", "agents[0].name", "letters"},
		{"agents: [{name: a, url: 'http://a:1', token_file: t}, {name: a, url: 'http://b:1', token_file: t}]", "agents[1].name", "duplicate"},
		{"agents: [{name: a, token_file: t}]", "agents[0].url", "must be set"},
		{"agents: [{name: a, url: 'ftp://a:1', token_file: t}]", "agents[0].url", "want http"},
		{"agents: [{name: a, url: 'http://a:1'}]", "agents[0].token_file", "must be set"},
		{"agents: [{name: a, url: 'http://a:1', token: x}]", "agents[0].token", "unknown"},
		{"launch: {replicas: 0}", "launch.replicas", "at least 1"},
		// Regression: no upper bound, so a typo started that many processes.
		{"launch: {replicas: 1000}", "launch.replicas", "at most 256"},
		{"launch: {gpus_per_replica: -2}", "launch.gpus_per_replica", "at least 1"},
		{"launch: {ready_timeout: -1s}", "launch.ready_timeout", "positive"},
	} {
		_, err := Parse([]byte(basePools + tc.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error naming %s (%s)", tc.yaml, err, tc.key, tc.msg)
		}
	}
}

func TestRetentionModeStop(t *testing.T) {
	c, err := Parse([]byte(basePools + "rollout: {retention_mode: stop}\n"))
	if err != nil || c.Rollout.RetentionMode != "stop" {
		t.Fatalf("stop: %+v %v", c.Rollout, err)
	}
}
