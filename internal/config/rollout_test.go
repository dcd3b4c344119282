package config

import (
	"strings"
	"testing"
	"time"
)

const basePools = `
pools:
  blue: {model: m1, replicas: [http://127.0.0.1:8001]}
  green: {model: m2, replicas: [http://127.0.0.1:8002]}
`

func TestRolloutDefaults(t *testing.T) {
	c, err := Parse([]byte(basePools))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rollout
	if r.ProgressDeadline.D() != 30*time.Minute || r.Retention.D() != time.Hour || r.AutoPromote || r.AutoPromoteAfter != 0 ||
		r.MinReady != 0 || r.DrainTimeout.D() != 5*time.Minute || len(r.Warmup.Requests) != 2 || !r.Warmup.Requests[1].Stream {
		t.Fatalf("rollout defaults: %+v", r)
	}
	c, err = Parse([]byte(basePools + "rollout:\n  warmup:\n    requests: []\n"))
	if err != nil || len(c.Rollout.Warmup.Requests) != 0 {
		t.Fatalf("an empty warm-up list must turn warm-up off: %+v %v", c.Rollout.Warmup, err)
	}
}

// TestRolloutAndHookErrors: invalid rollout and hook values are rejected
// with the key named.
func TestRolloutAndHookErrors(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"negative retention", "rollout: {retention: -1h}", "rollout.retention", "-1h0m0s"},
		{"retention over 24h", "rollout: {retention: 25h}", "rollout.retention", "25h0m0s"},
		{"negative auto promote", "rollout: {auto_promote_after: -5s}", "rollout.auto_promote_after", "-5s"},
		{"zero progress deadline", "rollout: {progress_deadline: 0s}", "rollout.progress_deadline", "positive"},
		{"negative min_ready", "rollout: {min_ready: -1}", "rollout.min_ready", "-1"},
		{"negative drain", "rollout: {drain_timeout: -1s}", "rollout.drain_timeout", "-1s"},
		{"empty warm-up prompt", "rollout: {warmup: {requests: [{prompt: ''}]}}", "rollout.warmup.requests[0].prompt", "empty"},
		{"bad duration", "rollout: {retention: forever}", "rollout.retention", "forever"},
		{"unknown rollout key", "rollout: {retension: 1h}", "rollout.retension", "unknown key"},
		{"unknown hook event", "hooks: {on_party: [{command: [true]}]}", "hooks.on_party", "unknown hook event"},
		{"webhook not http", "hooks: {on_retire: [{webhook: 'ftp://x/y'}]}", "hooks.on_retire[0].webhook", "ftp://x/y"},
		{"hook with neither", "hooks: {on_retire: [{timeout: 5s}]}", "hooks.on_retire[0]", "needs command"},
		{"hook with both", "hooks: {on_retire: [{command: [true], webhook: 'http://x'}]}", "hooks.on_retire[0]", "both"},
		{"negative hook timeout", "hooks: {on_fail: [{command: [true], timeout: -1s}]}", "hooks.on_fail[0].timeout", "-1s"},
		{"unknown hook key", "hooks: {on_fail: [{cmd: [true]}]}", "hooks.on_fail[0].cmd", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(basePools + tt.yaml + "\n"))
			ce, ok := err.(*Error)
			if !ok {
				t.Fatalf("err = %v, want *Error", err)
			}
			for _, f := range ce.Fields {
				if f.Key == tt.key && strings.Contains(f.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("no error for %s mentioning %q in:\n%v", tt.key, tt.msg, err)
		})
	}
}

func TestHookSpecs(t *testing.T) {
	c, err := Parse([]byte(basePools + "hooks:\n  on_retire:\n    - command: [systemctl, stop, vllm@blue]\n      timeout: 2m\n    - webhook: https://hooks.example/retire\n"))
	if err != nil {
		t.Fatal(err)
	}
	specs := c.HookSpecs()["on_retire"]
	if len(specs) != 2 || specs[0].Timeout != 2*time.Minute || specs[0].Command[2] != "vllm@blue" || specs[1].Webhook != "https://hooks.example/retire" {
		t.Fatalf("specs: %+v", specs)
	}
}
