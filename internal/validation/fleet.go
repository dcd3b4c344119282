package validation

import (
	"slices"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/shadow"
)

// Window names what a Recorder measures: the candidate against the live
// pool before the promotion, or the new live pool alone after it.
type Window struct {
	// Key identifies the window (deployment id and kind); a new key
	// starts from no samples.
	Key string
	// Live and Candidate are the pools; Live is empty after the
	// promotion (the baseline was recorded already).
	Live, Candidate string
	// Shadow reports a window that takes shadow copies of the live
	// pool's traffic (a blue-green validation); false: client traffic
	// only.
	Shadow bool
}

// Recorder keeps this gateway's samples of one window so that other
// gateways' leader can merge them (a fleet member publishes them). It is a
// proxy.Observer; with no window set it records nothing.
type Recorder struct {
	// Adjust is as Validator.Adjust; set it before the first SetWindow.
	Adjust func(pool string, s *Sample)
	// Mirror, when set, is called on every change of window (from
	// SetWindow, without the recorder's lock): for a window that takes
	// shadow copies with sink, which records a pair in it, and otherwise
	// with a nil sink (stop mirroring). Set it before the first
	// SetWindow; nil: this gateway takes no shadow copies.
	Mirror func(w Window, sink func(shadow.Pair))
	// Unanswered, when set, returns how long each of this gateway's
	// shadow copies in flight has waited (shadow.Mirror.Unanswered); a
	// window with shadow copies publishes them. Set it before the first
	// SetWindow.
	Unanswered func() []time.Duration

	mu  sync.Mutex // guards the fields below
	win Window
	run *Run
}

var _ proxy.Observer = (*Recorder)(nil)

// SetWindow starts recording w, dropping the previous window's samples
// when w differs from it. A zero w stops recording.
func (r *Recorder) SetWindow(w Window) {
	r.mu.Lock()
	if w == r.win {
		r.mu.Unlock()
		return
	}
	r.win, r.run = w, nil
	if w.Key != "" {
		r.run = &Run{live: w.Live, candidate: w.Candidate, adjust: r.Adjust}
		if w.Live == "" {
			r.run.baseline = &Stats{}
		}
	}
	run := r.run
	r.mu.Unlock()
	if r.Mirror == nil {
		return
	}
	var sink func(shadow.Pair)
	if w.Shadow && run != nil {
		sink = run.AddPair
	}
	r.Mirror(w, sink)
}

// Observe implements proxy.Observer.
func (r *Recorder) Observe(o *proxy.Observation) {
	r.mu.Lock()
	run := r.run
	r.mu.Unlock()
	if run != nil {
		run.observe(o)
	}
}

// Snapshot returns the window and a copy of its samples so far.
func (r *Recorder) Snapshot() (Window, Aggregate) {
	r.mu.Lock()
	w, run := r.win, r.run
	r.mu.Unlock()
	if run == nil {
		return w, Aggregate{}
	}
	// Encoded outside the run's mutex, which the data plane takes for
	// every live request.
	run.mu.Lock()
	cand, base := slices.Clone(run.cand.s), slices.Clone(run.base.s)
	a := Aggregate{Shadow: run.shadows, Pairs: run.pairs, Mismatches: run.mismatches}
	run.mu.Unlock()
	a.Candidate, a.Live = encode(cand), encode(base)
	if w.Shadow && r.Unanswered != nil {
		now := time.Now()
		for _, age := range r.Unanswered() {
			a.Unanswered = append(a.Unanswered, now.Add(-age).UnixMilli())
		}
	}
	return w, a
}

// Aggregate is one gateway's samples of a window in a compact, mergeable
// form: each sample is [failed, stream, duration µs, TTFT µs, tokens].
// Merging is concatenation, so the gates' quantiles over the merge are
// exact; the shadow counts add up.
type Aggregate struct {
	Candidate [][5]int64 `json:"candidate,omitempty"`
	Live      [][5]int64 `json:"live,omitempty"`
	// Shadow is how many shadow copies the candidate answered (their
	// samples are in Candidate); Pairs how many of them were judged
	// (deterministic, both answers whole) and Mismatches how many of
	// those differed.
	Shadow     int `json:"shadow,omitempty"`
	Pairs      int `json:"pairs,omitempty"`
	Mismatches int `json:"mismatches,omitempty"`
	// Unanswered holds when (Unix ms) each of the gateway's shadow copies
	// still in flight at the snapshot was sent: the leader counts those
	// left hanging (see Inputs.Unanswered). Up to a publishing period old.
	Unanswered []int64 `json:"unanswered,omitempty"`
}

// Len is the number of samples in a.
func (a Aggregate) Len() int { return len(a.Candidate) + len(a.Live) }

// maxPublished bounds each side of a published aggregate (the newest stay),
// keeping an etcd value well under its size limit.
const maxPublished = 5000

func encode(ss []Sample) [][5]int64 {
	if len(ss) > maxPublished {
		ss = ss[len(ss)-maxPublished:]
	}
	out := make([][5]int64, len(ss))
	for i, s := range ss {
		out[i] = [5]int64{b2i(s.Failed), b2i(s.Stream), s.Duration.Microseconds(), s.TTFT.Microseconds(), int64(s.Tokens)}
	}
	return out
}

func decode(v [][5]int64) []Sample {
	out := make([]Sample, len(v))
	for i, x := range v {
		out[i] = Sample{Failed: x[0] != 0, Stream: x[1] != 0, Duration: time.Duration(x[2]) * time.Microsecond,
			TTFT: time.Duration(x[3]) * time.Microsecond, Tokens: int(x[4])}
	}
	return out
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// inputsWith is Inputs with other gateways' samples added.
func (r *Run) inputsWith(extra []Aggregate) Inputs {
	cand, base, in := r.snapshot()
	for _, a := range extra {
		cand = append(cand, decode(a.Candidate)...)
		base = append(base, decode(a.Live)...)
		in.Pairs += a.Pairs
		in.Mismatches += a.Mismatches
		for _, ms := range a.Unanswered {
			in.Unanswered = append(in.Unanswered, time.Since(time.UnixMilli(ms)))
		}
	}
	r.summariseInto(&in, cand, base)
	return in
}
