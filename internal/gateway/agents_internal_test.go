package gateway

import (
	"testing"
	"time"
)

// TestAgentBackoff: an agent that does not answer is checked again after
// 1s, doubling, at most every 30s.
func TestAgentBackoff(t *testing.T) {
	for _, tc := range []struct {
		fails int
		want  time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 16 * time.Second}, {6, 30 * time.Second}, {50, 30 * time.Second}} {
		if got := agentBackoff(tc.fails); got != tc.want {
			t.Errorf("after %d failed checks: next in %s, want %s", tc.fails, got, tc.want)
		}
	}
}
