package metrics

import (
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestPoolWeights: cutover_pool_weight is 100/0 outside a canary and the
// step's split during one; cutover_canary_step follows the step.
func TestPoolWeights(t *testing.T) {
	pools := map[string]api.Pool{"blue": {Name: "blue", Live: true}, "green": {Name: "green"}}
	cases := []struct {
		name              string
		st                api.Status
		blue, green, step float64
	}{
		{"no canary", api.Status{Pools: pools}, 100, 0, 0},
		{"canary step 2 at 25", api.Status{Pools: pools, Weights: map[string]int{"blue": 75, "green": 25},
			Deployment: &api.Deployment{Phase: "canary", Canary: &api.Canary{Step: 2, Weight: 25}}}, 75, 25, 2},
		{"failed canary", api.Status{Pools: pools, Deployment: &api.Deployment{Phase: "failed", Canary: &api.Canary{Step: 1}}}, 100, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(fakeSource{st: tc.st})
			for series, want := range map[string]float64{`cutover_pool_weight{pool="blue"}`: tc.blue, `cutover_pool_weight{pool="green"}`: tc.green, "cutover_canary_step": tc.step} {
				if got := histCount(t, m, series); got != want {
					t.Errorf("%s = %v, want %v", series, got, want)
				}
			}
		})
	}
}
