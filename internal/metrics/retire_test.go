package metrics

import (
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestRetireFailuresClear: cutover_retire_failures counts failed on_retire
// attempts while retiring and returns to 0 once the retirement completed,
// forced or not (a regression: it kept the attempts of the completed
// deployment, so the documented alert never cleared).
func TestRetireFailuresClear(t *testing.T) {
	cases := []struct {
		name  string
		phase string
		tries int
		want  float64
	}{
		{"retiring, hook failing", "retiring", 3, 3},
		{"retiring, first attempt", "retiring", 0, 0},
		{"completed after failures (forced or retried)", "completed", 3, 0},
		{"promoted", "promoted", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(fakeSource{st: api.Status{Deployment: &api.Deployment{ID: "d-1", Phase: tc.phase, RetireAttempts: tc.tries}}})
			if got := histCount(t, m, "cutover_retire_failures"); got != tc.want {
				t.Errorf("cutover_retire_failures = %v, want %v", got, tc.want)
			}
		})
	}
}
