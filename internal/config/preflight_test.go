package config

import (
	"strings"
	"testing"
	"time"
)

// TestPreflightTimeout: rollout.preflight.timeout defaults to 5s, takes a
// duration, and must be positive (a zero bound would refuse every switch).
func TestPreflightTimeout(t *testing.T) {
	for yaml, want := range map[string]time.Duration{
		"":                                    5 * time.Second,
		"rollout: {preflight: {timeout: 2s}}": 2 * time.Second,
	} {
		c, err := Parse([]byte(basePools + yaml + "\n"))
		if err != nil || c.Rollout.Preflight.Timeout.D() != want {
			t.Errorf("%q: %v %v, want %s", yaml, c.Rollout.Preflight, err, want)
		}
	}
	for _, yaml := range []string{"rollout: {preflight: {timeout: 0s}}", "rollout: {preflight: {timeout: -1s}}"} {
		_, err := Parse([]byte(basePools + yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), "rollout.preflight.timeout") || !strings.Contains(err.Error(), "positive") {
			t.Errorf("%s: %v, want an error naming rollout.preflight.timeout", yaml, err)
		}
	}
}
