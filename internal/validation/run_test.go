package validation

import (
	"context"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/shadow"
)

// TestRunKeepsHungUpFailures: a client that hung up says nothing of the
// version and is left out, unless the stream had already carried an error
// event: that failure counts.
func TestRunKeepsHungUpFailures(t *testing.T) {
	r := &Run{live: "blue", candidate: "green"}
	r.observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true, Error: "client_closed"})
	r.observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true, Error: "client_closed", StreamError: true})
	r.observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true})
	if len(r.cand.s) != 2 {
		t.Fatalf("%d candidate samples, want 2 (the plain hang-up left out)", len(r.cand.s))
	}
	if !r.cand.s[0].Failed || r.cand.s[1].Failed {
		t.Errorf("samples %+v: want the stream error failed and the clean answer not", r.cand.s)
	}
}

// TestAdjustSeesEverySample: the Adjust hook gets each sample with the
// pool it measures (live traffic, shadow copies and synthetic results),
// and what it changes is what the gates see.
func TestAdjustSeesEverySample(t *testing.T) {
	seen := map[string]int{}
	v := NewValidator(Gates{}, nil, nil)
	v.Adjust = func(pool string, s *Sample) {
		seen[pool]++
		s.TTFT = 7 * time.Millisecond
	}
	v.Start(context.Background(), "blue", &pool.Pool{Name: "green"})
	defer v.Stop()
	v.Observe(&proxy.Observation{Pool: "blue", Status: 200, Stream: true, TTFT: time.Second, Duration: time.Second, Tokens: 2})
	v.Observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true, TTFT: time.Second, Duration: time.Second, Tokens: 2})
	r := v.run.Load()
	r.AddPair(shadow.Pair{Live: proxy.Observation{Stream: true, Status: 200}, Shadow: shadow.Result{Status: 200, TTFT: time.Second, Duration: time.Second}})
	r.AddSynthetic(Sample{Stream: true, TTFT: time.Second, Duration: time.Second}, true)
	if seen["blue"] != 1 || seen["green"] != 3 {
		t.Fatalf("Adjust saw %v, want blue 1 and green 3", seen)
	}
	in := r.Inputs()
	if in.Baseline.TTFTP95 != 7 || in.Candidate.TTFTP95 != 7 {
		t.Errorf("TTFT p95 live %v ms, candidate %v ms; want the adjusted 7 ms", in.Baseline.TTFTP95, in.Candidate.TTFTP95)
	}
}

// TestSetGates: gates set by a reload judge the window in progress from
// its next evaluation.
func TestSetGates(t *testing.T) {
	gate := GateConfig{Enabled: true, Threshold: 0.02, MinSamples: 4}
	v := NewValidator(Gates{ErrorRate: gate}, nil, nil)
	v.Start(context.Background(), "blue", &pool.Pool{Name: "green"})
	defer v.Stop()
	for i := range 4 {
		v.Observe(&proxy.Observation{Pool: "green", Status: 200 + 300*(i%2)}) // half of them 500
	}
	verdict := func() string {
		t.Helper()
		gates, _ := v.Evaluate()
		for _, g := range gates {
			if g.Name == "error_rate" {
				return g.Verdict
			}
		}
		t.Fatalf("no error_rate gate in %+v", gates)
		return ""
	}
	if got := verdict(); got != Fail {
		t.Fatalf("error rate 0.5 against 0.02: %s, want %s", got, Fail)
	}
	gate.Threshold = 0.6
	v.SetGates(Gates{ErrorRate: gate})
	if got := verdict(); got != Pass {
		t.Errorf("error rate 0.5 against the reloaded 0.6: %s, want %s", got, Pass)
	}
}

// TestInputsSummariseOutsideTheLock: an evaluation sorts up to
// 2×maxSamples values; it must not do so holding the run's mutex, which
// the data plane takes for every live request it observes (a live request
// finishing during an evaluation waited for the whole sort).
func TestInputsSummariseOutsideTheLock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []Aggregate
	}{
		{"this gateway's samples", nil},
		{"with a fleet's", []Aggregate{{Pairs: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Run{live: "blue", candidate: "green"}
			r.observe(&proxy.Observation{Pool: "blue", Status: 200, Duration: time.Millisecond})
			r.observe(&proxy.Observation{Pool: "green", Status: 200, Duration: 2 * time.Millisecond})
			calls := 0
			r.summarise = func(s []Sample) Stats {
				calls++
				if !r.mu.TryLock() {
					t.Error("Summarise runs with the run's mutex held")
				} else {
					r.mu.Unlock()
				}
				return Summarise(s)
			}
			var in Inputs
			if tc.extra == nil {
				in = r.Inputs()
			} else {
				in = r.inputsWith(tc.extra)
			}
			if calls != 2 || in.Candidate.Samples != 1 || in.Baseline.Samples != 1 || in.Pairs != len(tc.extra) {
				t.Errorf("%d summaries, inputs %+v; want 2, one sample a side and %d pairs", calls, in, len(tc.extra))
			}
		})
	}
}

// TestFullWindowReplacesInPlace: once a side holds maxSamples, a new
// sample replaces the oldest in place — the window keeps the latest
// maxSamples and is never reallocated on the data plane's path (a slice
// trimmed from the front was copied whole every few thousand requests,
// under the mutex every live request takes).
func TestFullWindowReplacesInPlace(t *testing.T) {
	var w window
	for i := range maxSamples {
		w.add(Sample{Tokens: i})
	}
	backing := &w.s[0]
	const more = 2*maxSamples + 7
	for i := range more {
		w.add(Sample{Tokens: maxSamples + i})
		if &w.s[0] != backing {
			t.Fatalf("sample %d reallocated the full window", maxSamples+i)
		}
	}
	if len(w.s) != maxSamples {
		t.Fatalf("%d samples, want %d", len(w.s), maxSamples)
	}
	seen := make(map[int]bool, maxSamples)
	for _, s := range w.s {
		seen[s.Tokens] = true
	}
	for i := more; i < maxSamples+more; i++ { // the latest maxSamples
		if !seen[i] {
			t.Fatalf("sample %d missing from the window", i)
		}
	}
}
