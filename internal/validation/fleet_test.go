package validation

import (
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/proxy"
)

// TestValidatorMergesRemoteSamples: the gates see this gateway's samples
// and the other gateways' (Remote) together; without Remote only its own.
func TestValidatorMergesRemoteSamples(t *testing.T) {
	g := Gates{ErrorRate: GateConfig{Enabled: true, Threshold: 0.1, MinSamples: 4}}
	rec := &Recorder{}
	rec.SetWindow(Window{Key: "d-1/pre", Live: "blue", Candidate: "green"})
	for _, status := range []int{500, 500, 200} {
		rec.Observe(&proxy.Observation{Pool: "green", Status: status, Duration: 3 * time.Millisecond})
	}
	rec.Observe(&proxy.Observation{Pool: "blue", Status: 200, Duration: 5 * time.Millisecond})
	rec.Observe(&proxy.Observation{Pool: "other", Status: 500})
	w, agg := rec.Snapshot()
	if w.Key != "d-1/pre" || len(agg.Candidate) != 3 || len(agg.Live) != 1 || agg.Len() != 4 {
		t.Fatalf("snapshot %v %+v: want 3 candidate and 1 live samples", w, agg)
	}
	readAt := time.Now()
	tests := []struct {
		name    string
		remote  func(time.Time) []Aggregate
		samples int
		verdict string
	}{
		{"own samples only", nil, 1, Inconclusive},
		{"merged", func(time.Time) []Aggregate { return []Aggregate{agg} }, 4, Fail},
		// Samples read before this window began may be another's: left out.
		{"read before the window began", func(since time.Time) []Aggregate {
			if readAt.Before(since) {
				return nil
			}
			return []Aggregate{agg}
		}, 1, Inconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewValidator(g, nil, nil)
			v.Remote = tt.remote
			v.StartCanary("blue", "green")
			defer v.Stop()
			v.Observe(&proxy.Observation{Pool: "green", Status: 200, Duration: time.Millisecond})
			gates, live := v.Evaluate()
			if len(gates) != 1 || gates[0].Samples != tt.samples || gates[0].Verdict != tt.verdict {
				t.Fatalf("gates %+v: want %d samples, %s", gates, tt.samples, tt.verdict)
			}
			if tt.verdict == Fail && (live.Samples != 1 || live.LatencyP95 != 5) {
				t.Errorf("live %+v: want the remote live sample", live)
			}
		})
	}
	// A new window starts empty; a zero one records nothing.
	rec.SetWindow(Window{Key: "d-1/post", Candidate: "green"})
	rec.Observe(&proxy.Observation{Pool: "blue", Status: 200})
	if _, agg := rec.Snapshot(); agg.Len() != 0 {
		t.Fatalf("post window recorded %+v, want nothing (no live side after the promotion)", agg)
	}
	rec.SetWindow(Window{})
	rec.Observe(&proxy.Observation{Pool: "green", Status: 200})
	if _, agg := rec.Snapshot(); agg.Len() != 0 {
		t.Fatalf("no window recorded %+v", agg)
	}
}
