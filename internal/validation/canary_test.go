package validation

import (
	"testing"

	"github.com/cutover-dev/cutover/internal/proxy"
)

// TestCanaryWindow: a canary window measures the candidate's real answers
// against the live pool's; the shadow and synthetic gates, which have no
// data in a canary, are left out instead of staying inconclusive.
func TestCanaryWindow(t *testing.T) {
	g := Gates{ErrorRate: GateConfig{Enabled: true, Threshold: 0.1, MinSamples: 10},
		ShadowMismatch: GateConfig{Enabled: true, Threshold: 0.1, MinSamples: 1}, Synthetic: GateConfig{Enabled: true, Threshold: 1, MinSamples: 1}}
	v := NewValidator(g, nil, nil)
	v.StartCanary("blue", "green")
	defer v.Stop()
	for i := range 20 {
		v.Observe(&proxy.Observation{Pool: "blue", Status: 200})
		st := 200
		if i%2 == 0 {
			st = 500
		}
		v.Observe(&proxy.Observation{Pool: "green", Status: st})
	}
	gates, live := v.Evaluate()
	if live.Samples != 20 {
		t.Fatalf("live samples %d, want 20", live.Samples)
	}
	if len(gates) != 1 || gates[0].Name != GateErrorRate || gates[0].Verdict != Fail || gates[0].Samples != 20 || gates[0].Value != 0.5 {
		t.Fatalf("gates %+v, want error_rate failing at 0.5 over 20", gates)
	}
}
