package config

import (
	"strings"
	"testing"
	"time"
)

func TestCanaryConfig(t *testing.T) {
	c, err := Parse([]byte(basePools + "rollout:\n  strategy: canary\n  canary:\n    steps:\n      - {weight: 5, pause: 10m}\n      - {weight: 50, pause: 0s}\n  affinity: {header: X-Session-Id, hash: [user, first_message]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rollout
	if !r.CanaryStrategy() || len(r.Canary.Steps) != 2 || r.Canary.Steps[0].Weight != 5 || r.Canary.Steps[0].Pause.D() != 10*time.Minute ||
		r.Canary.Steps[1].Pause != 0 || r.Affinity.Header != "X-Session-Id" ||
		len(r.Affinity.Hash) != 2 || r.Affinity.Hash[0] != "user" || r.Affinity.Hash[1] != "first_message" {
		t.Fatalf("canary config: %+v", r)
	}
	c, err = Parse([]byte(basePools))
	if err != nil || c.Rollout.CanaryStrategy() {
		t.Fatalf("the default strategy must be blue-green: %+v %v", c.Rollout, err)
	}
}

// TestCanaryConfigErrors: a bad canary setting names its key.
func TestCanaryConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"unknown strategy", "rollout: {strategy: rolling}", "rollout.strategy", "rolling"},
		{"canary without steps", "rollout: {strategy: canary}", "rollout.canary.steps", "at least one"},
		{"steps without canary", "rollout: {canary: {steps: [{weight: 5, pause: 1m}]}}", "rollout.canary.steps", "only used"},
		{"weight zero", "rollout: {strategy: canary, canary: {steps: [{weight: 0, pause: 1m}]}}", "rollout.canary.steps[0].weight", "got 0"},
		{"weight over 100", "rollout: {strategy: canary, canary: {steps: [{weight: 101, pause: 1m}]}}", "rollout.canary.steps[0].weight", "got 101"},
		{"first step 100", "rollout: {strategy: canary, canary: {steps: [{weight: 100, pause: 1m}]}}", "rollout.canary.steps[0].weight", "first step must send only part"},
		{"weight going down", "rollout: {strategy: canary, canary: {steps: [{weight: 50, pause: 1m}, {weight: 20, pause: 1m}]}}", "rollout.canary.steps[1].weight", "previous step's 50"},
		{"negative pause", "rollout: {strategy: canary, canary: {steps: [{weight: 5, pause: -1m}]}}", "rollout.canary.steps[0].pause", "-1m0s"},
		{"unknown step key", "rollout: {strategy: canary, canary: {steps: [{weigth: 5}]}}", "rollout.canary.steps[0].weigth", "unknown key"},
		{"bad affinity header", "rollout: {affinity: {header: 'X Session'}}", "rollout.affinity.header", "not a header name"},
		{"unknown affinity hash", "rollout: {affinity: {hash: [user, session]}}", "rollout.affinity.hash[1]", `got "session"`},
		{"affinity hash twice", "rollout: {affinity: {hash: [user, user]}}", "rollout.affinity.hash[1]", "twice"},
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

// TestRoutingConfigErrors: header routing needs its token file and the
// builtin driver; the canary strategy needs the builtin driver.
func TestRoutingConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"header without token", "routing: {pool_header: X-Cutover-Target}", "routing.pool_header", "pool_header_token_file"},
		{"token without header", "routing: {pool_header_token_file: /etc/t}", "routing.pool_header_token_file", "only used"},
		{"bad header", "routing: {pool_header: 'X Target', pool_header_token_file: /etc/t}", "routing.pool_header", "not a header name"},
		{"canary with nginx", "driver: nginx\nnginx: {upstream_file: /tmp/u.conf, verify_url: 'http://127.0.0.1:8000/health'}\nrollout: {strategy: canary, canary: {steps: [{weight: 5, pause: 1m}]}}", "rollout.strategy", "driver: builtin"},
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
	c, err := Parse([]byte(basePools + "routing: {pool_header: X-Cutover-Target, pool_header_token_file: /etc/cutover/target-token}\n"))
	if err != nil || c.Routing.PoolHeader != "X-Cutover-Target" {
		t.Fatalf("routing: %+v %v", c.Routing, err)
	}
}
