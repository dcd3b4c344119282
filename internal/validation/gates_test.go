package validation

import (
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

func samples(n int, d, ttft time.Duration, tokens int, failEvery int) []Sample {
	var out []Sample
	for i := range n {
		out = append(out, Sample{Failed: failEvery > 0 && i%failEvery == 0, Stream: true, Duration: d, TTFT: ttft, Tokens: tokens})
	}
	return out
}

func TestEvaluate(t *testing.T) {
	base := Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 0))
	g := GatesFromConfig(config.Default().Validation.Gates) // the thresholds users get
	g.ShadowMismatch.Enabled = true
	tests := []struct {
		name string
		in   Inputs
		want map[string]string
	}{
		{"good", Inputs{Candidate: Summarise(samples(100, 210*time.Millisecond, 52*time.Millisecond, 16, 0)), Baseline: base, Pairs: 50},
			map[string]string{GateErrorRate: Pass, GateLatencyRatio: Pass, GateTTFTRatio: Pass, GateTPSRatio: Pass, GateShadowMismatch: Pass}},
		{"errors", Inputs{Candidate: Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 20)), Baseline: base},
			map[string]string{GateErrorRate: Fail}},
		{"slow first token", Inputs{Candidate: Summarise(samples(100, 250*time.Millisecond, 100*time.Millisecond, 16, 0)), Baseline: base},
			map[string]string{GateTTFTRatio: Fail, GateLatencyRatio: Pass}},
		{"slow generation", Inputs{Candidate: Summarise(samples(100, 450*time.Millisecond, 50*time.Millisecond, 16, 0)), Baseline: base},
			map[string]string{GateTPSRatio: Fail, GateLatencyRatio: Fail}},
		{"no data is inconclusive, never a pass", Inputs{},
			map[string]string{GateErrorRate: Inconclusive, GateLatencyRatio: Inconclusive, GateTTFTRatio: Inconclusive, GateTPSRatio: Inconclusive, GateShadowMismatch: Inconclusive}},
		{"candidate data but no baseline", Inputs{Candidate: Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 0))},
			map[string]string{GateErrorRate: Pass, GateLatencyRatio: Inconclusive, GateTTFTRatio: Inconclusive}},
		{"few samples", Inputs{Candidate: Summarise(samples(5, 200*time.Millisecond, 50*time.Millisecond, 16, 1)), Baseline: base},
			map[string]string{GateErrorRate: Inconclusive}},
		{"mismatches", Inputs{Pairs: 40, Mismatches: 10}, map[string]string{GateShadowMismatch: Fail}},
		{"suite still running", Inputs{SyntheticRun: 3, SyntheticPassed: 3, SyntheticExpected: 10}, map[string]string{GateSynthetic: Inconclusive}},
		{"suite failed a case", Inputs{SyntheticRun: 10, SyntheticPassed: 9, SyntheticExpected: 10}, map[string]string{GateSynthetic: Fail}},
		{"suite passed", Inputs{SyntheticRun: 10, SyntheticPassed: 10, SyntheticExpected: 10}, map[string]string{GateSynthetic: Pass}},
		// Copies unanswered for over 1.5 × the live p95 (300 ms) count as
		// errors, and while any does the error rate does not pass.
		{"copies in flight within the bound", Inputs{Candidate: Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 0)), Baseline: base,
			Unanswered: []time.Duration{10 * time.Millisecond, 290 * time.Millisecond}}, map[string]string{GateErrorRate: Pass}},
		{"a copy hanging", Inputs{Candidate: Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 0)), Baseline: base,
			Unanswered: []time.Duration{10 * time.Millisecond, 301 * time.Millisecond}}, map[string]string{GateErrorRate: Inconclusive, GateLatencyRatio: Pass}},
		{"a candidate that stopped answering", Inputs{Candidate: Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 0)), Baseline: base,
			Unanswered: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}}, map[string]string{GateErrorRate: Fail}},
		{"no live p95: no bound", Inputs{Candidate: Summarise(samples(100, 200*time.Millisecond, 50*time.Millisecond, 16, 0)),
			Unanswered: []time.Duration{time.Hour}}, map[string]string{GateErrorRate: Pass}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for _, gate := range Evaluate(g, tt.in) {
				got[gate.Name] = gate.Verdict
			}
			for name, want := range tt.want {
				if got[name] != want {
					t.Errorf("%s = %q, want %q (all: %v)", name, got[name], want, got)
				}
			}
		})
	}
}

func TestDisabledGatesAreNotEvaluated(t *testing.T) {
	g := Gates{ErrorRate: GateConfig{Enabled: true, Threshold: 0.1, MinSamples: 1}}
	gates := Evaluate(g, Inputs{SyntheticExpected: 0})
	if len(gates) != 1 || gates[0].Name != GateErrorRate {
		t.Fatalf("gates %+v", gates)
	}
}
