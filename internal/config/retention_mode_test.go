package config

import (
	"strings"
	"testing"
	"time"
)

func TestRetentionMode(t *testing.T) {
	c, err := Parse([]byte(basePools))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rollout.RetentionMode != "keep" || c.Rollout.WakeTimeout.D() != 2*time.Minute {
		t.Fatalf("defaults: retention_mode %q wake_timeout %s", c.Rollout.RetentionMode, c.Rollout.WakeTimeout)
	}
	c, err = Parse([]byte(basePools + "rollout: {retention_mode: sleep, wake_timeout: 30s}\n"))
	if err != nil || c.Rollout.RetentionMode != "sleep" || c.Rollout.WakeTimeout.D() != 30*time.Second {
		t.Fatalf("sleep: %+v %v", c.Rollout, err)
	}
	for yaml, want := range map[string]int{
		"rollout: {retention_mode: shrink}":               1,
		"rollout: {retention_mode: shrink, shrink_to: 3}": 3,
	} {
		c, err := Parse([]byte(basePools + yaml + "\n"))
		if err != nil || c.Rollout.RetentionMode != "shrink" || c.Rollout.KeptWhenShrunk() != want {
			t.Errorf("%s: %+v %v, want shrink keeping %d", yaml, c, err, want)
		}
	}
	for _, tc := range []struct{ yaml, key, msg string }{
		{"rollout: {retention_mode: nap}", "rollout.retention_mode", "want keep, sleep, shrink or stop"},
		{"rollout: {retention_mode: shrink, shrink_to: 0}", "rollout.shrink_to", "at least 1"},
		{"rollout: {retention_mode: shrink, shrink_to: -2}", "rollout.shrink_to", "at least 1"},
		{"rollout: {shrink_to: 1}", "rollout.shrink_to", "only meaningful with rollout.retention_mode shrink (it is keep)"},
		{"rollout: {retention_mode: sleep, shrink_to: 2}", "rollout.shrink_to", "only meaningful with rollout.retention_mode shrink (it is sleep)"},
		{"rollout: {retention_mode: stop}\nvalidation: {post_promotion: 1m}", "validation.post_promotion", "retention_mode stop"},
		{"rollout: {wake_timeout: 0s}", "rollout.wake_timeout", "positive"},
	} {
		_, err := Parse([]byte(basePools + tc.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error naming %s (%s)", tc.yaml, err, tc.key, tc.msg)
		}
	}
}
