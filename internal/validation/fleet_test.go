package validation

import (
	"context"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/shadow"
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

// TestRecorderMirrorsShadowAndLeaderMergesPairs: a window that takes
// shadow copies hands its recorder's sink to Mirror (and a window that
// does not, nil); the pairs recorded are published in the aggregate, and
// the leader's gates add them to its own.
func TestRecorderMirrorsShadowAndLeaderMergesPairs(t *testing.T) {
	var sinks []func(shadow.Pair)
	rec := &Recorder{Mirror: func(_ Window, sink func(shadow.Pair)) { sinks = append(sinks, sink) }}
	win := Window{Key: "d-1/validating", Live: "blue", Candidate: "green", Shadow: true}
	rec.SetWindow(win)
	rec.SetWindow(win) // unchanged: Mirror is not called again
	if len(sinks) != 1 || sinks[0] == nil {
		t.Fatalf("Mirror called %d times (sink nil: %v), want once with a sink", len(sinks), len(sinks) > 0 && sinks[0] == nil)
	}
	judged := func(match bool) shadow.Pair {
		return shadow.Pair{Deterministic: true, Comparable: true, TextMatch: match,
			Live: proxy.Observation{Pool: "blue", Status: 200}, Shadow: shadow.Result{Status: 200, Duration: time.Millisecond}}
	}
	sinks[0](judged(true))
	sinks[0](judged(true))
	sinks[0](judged(false))
	sinks[0](shadow.Pair{Live: proxy.Observation{Pool: "blue", Status: 200}, Shadow: shadow.Result{Status: 200}}) // not deterministic
	_, agg := rec.Snapshot()
	if agg.Shadow != 4 || agg.Pairs != 3 || agg.Mismatches != 1 || len(agg.Candidate) != 4 {
		t.Fatalf("aggregate %+v: want 4 shadow copies, 3 judged pairs, 1 mismatch, 4 candidate samples", agg)
	}
	rec.SetWindow(Window{Key: "d-1/pre", Live: "blue", Candidate: "green"})
	if len(sinks) != 2 || sinks[1] != nil {
		t.Fatalf("a window without shadow copies: Mirror calls %d, want a second one with a nil sink", len(sinks))
	}

	g := Gates{ShadowMismatch: GateConfig{Enabled: true, Threshold: 0.2, MinSamples: 4}}
	v := NewValidator(g, nil, nil)
	v.Remote = func(time.Time) []Aggregate { return []Aggregate{agg} }
	v.Start(context.Background(), "blue", &pool.Pool{Name: "green"})
	defer v.Stop()
	v.AddPair(judged(true))
	other := judged(false)
	other.Live.Pool = "green" // not a copy of this window's live pool
	v.AddPair(other)
	gates, _ := v.Evaluate()
	if len(gates) != 1 || gates[0].Samples != 4 || gates[0].Verdict != Fail {
		t.Fatalf("gates %+v: want the shadow gate over 1 own and 3 remote pairs (1 mismatch of 4 > 0.2): fail", gates)
	}
	v.StartCanary("blue", "green")
	v.AddPair(judged(false))
	if in := v.run.Load().Inputs(); in.Pairs != 0 {
		t.Fatalf("a canary window took %d shadow pairs, want none", in.Pairs)
	}
}

// TestFleetCountsHangingCopies: in a fleet, a follower publishes when its
// shadow copies still in flight were sent, and the leader counts those
// left hanging, with its own (Validator.Unanswered), as a single gateway
// does (a regression: a fleet passed a candidate that had stopped
// answering until shadow.timeout).
func TestFleetCountsHangingCopies(t *testing.T) {
	rec := &Recorder{Unanswered: func() []time.Duration { return []time.Duration{time.Minute, time.Millisecond} }}
	rec.SetWindow(Window{Key: "d-1/validating", Live: "blue", Candidate: "green", Shadow: true})
	rec.Observe(&proxy.Observation{Pool: "blue", Status: 200, Duration: 100 * time.Millisecond})
	_, agg := rec.Snapshot()
	if len(agg.Unanswered) != 2 {
		t.Fatalf("published %v, want the 2 copies in flight", agg.Unanswered)
	}
	g := Gates{ErrorRate: GateConfig{Enabled: true, Threshold: 0.5, MinSamples: 1}, LatencyRatio: GateConfig{Threshold: 1.5}}
	for _, tt := range []struct {
		name    string
		own     []time.Duration
		remote  []Aggregate
		verdict string
	}{
		{"none hanging", nil, []Aggregate{{Live: agg.Live}}, Pass},
		{"a follower's copy hanging", nil, []Aggregate{agg}, Inconclusive},                                   // 1 of 3 over 150 ms
		{"the leader's and a follower's", []time.Duration{time.Minute, time.Minute}, []Aggregate{agg}, Fail}, // 3 of 5
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := NewValidator(g, nil, nil)
			v.Remote = func(time.Time) []Aggregate { return tt.remote }
			v.Unanswered = func() []time.Duration { return tt.own }
			v.Start(context.Background(), "blue", &pool.Pool{Name: "green"})
			defer v.Stop()
			for range 2 {
				v.AddPair(shadow.Pair{Live: proxy.Observation{Pool: "blue", Status: 200}, Shadow: shadow.Result{Status: 200, Duration: 90 * time.Millisecond}})
			}
			gates, _ := v.Evaluate()
			if len(gates) != 1 || gates[0].Verdict != tt.verdict {
				t.Fatalf("gates %+v: want error_rate %s", gates, tt.verdict)
			}
		})
	}
}
