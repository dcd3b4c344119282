package validation

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/shadow"
)

// maxSamples bounds each side's samples; the oldest give way.
const maxSamples = 20000

// Run collects one validation window's measurements.
type Run struct {
	live, candidate string
	baseline        *Stats // fixed baseline (post-promotion); nil: measure live
	realOnly        bool   // client traffic only (canary): no shadow or suite gates

	adjust func(pool string, s *Sample) // Validator.Adjust; nil: as measured
	// summarise is Summarise; tests replace it to see what it runs under.
	summarise func([]Sample) Stats

	mu                             sync.Mutex // guards the fields below
	cand, base                     window
	shadows, pairs, mismatches     int
	synRun, synPassed, synExpected int
}

// window holds a side's latest maxSamples samples, in no particular order
// (Summarise needs none).
type window struct {
	s    []Sample
	next int // once full: the index of the oldest sample, replaced next
}

// add records s in place of the oldest sample once w is full: no copy of
// the window on the data plane's path, which holds the run's mutex (a
// full slice trimmed from the front was reallocated and copied, 640 KB,
// every few thousand requests).
func (w *window) add(s Sample) {
	if len(w.s) < maxSamples {
		w.s = append(w.s, s)
		return
	}
	w.s[w.next] = s
	w.next = (w.next + 1) % maxSamples
}

func (r *Run) add(dst *window, s Sample) { dst.add(s) }

// observe routes a data-plane observation: the candidate's (preview
// traffic, or live traffic after the promotion) or the live baseline's.
func (r *Run) observe(o *proxy.Observation) {
	if o.Error == "client_closed" && !o.StreamError {
		return // says nothing of the version; one that failed does
	}
	s := Sample{Failed: o.Failed(), Stream: o.Stream, Duration: o.Duration, TTFT: o.TTFT, Tokens: o.Tokens}
	r.adjustSample(o.Pool, &s)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case o.Pool == r.candidate:
		r.add(&r.cand, s)
	case o.Pool == r.live && r.baseline == nil:
		r.add(&r.base, s)
	}
}

// AddPair records a shadow pair: the shadow answer is a candidate sample.
func (r *Run) AddPair(p shadow.Pair) {
	s := Sample{Failed: p.Shadow.Failed(), Stream: p.Live.Stream, Duration: p.Shadow.Duration, TTFT: p.Shadow.TTFT, Tokens: p.Shadow.Tokens}
	r.adjustSample(r.candidate, &s)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add(&r.cand, s)
	r.shadows++
	if p.Judged() {
		r.pairs++
		if p.Mismatch() {
			r.mismatches++
		}
	}
}

// AddSynthetic records a synthetic result, which is also a candidate
// sample.
func (r *Run) AddSynthetic(s Sample, passed bool) {
	r.adjustSample(r.candidate, &s)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add(&r.cand, s)
	r.synRun++
	if passed {
		r.synPassed++
	}
}

// adjustSample hands s, a measurement of pool, to the run's adjust hook.
func (r *Run) adjustSample(pool string, s *Sample) {
	if r.adjust != nil {
		r.adjust(pool, s)
	}
}

// Inputs summarises the run for Evaluate.
func (r *Run) Inputs() Inputs {
	cand, base, in := r.snapshot()
	r.summariseInto(&in, cand, base)
	return in
}

// snapshot copies the window's samples and counts under r.mu. Summarising
// them (sorting up to 2×maxSamples values, every evaluation) happens after,
// so that it never holds up the data plane's observe, which takes r.mu
// once per live request.
func (r *Run) snapshot() (cand, base []Sample, in Inputs) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cand = slices.Clone(r.cand.s)
	if r.baseline == nil {
		base = slices.Clone(r.base.s)
	}
	return cand, base, Inputs{Pairs: r.pairs, Mismatches: r.mismatches,
		SyntheticRun: r.synRun, SyntheticPassed: r.synPassed, SyntheticExpected: r.synExpected}
}

// summariseInto sets in's candidate and baseline stats from the samples
// of a snapshot (the recorded baseline when the run has one).
func (r *Run) summariseInto(in *Inputs, cand, base []Sample) {
	sum := r.summarise
	if sum == nil {
		sum = Summarise
	}
	in.Candidate = sum(cand)
	if r.baseline != nil {
		in.Baseline = *r.baseline
	} else {
		in.Baseline = sum(base)
	}
}

// SyntheticFunc runs a synthetic suite against the candidate pool in the
// background, reporting each result, and returns how many results the
// suite will produce. Nil means no suite.
type SyntheticFunc func(ctx context.Context, candidate *pool.Pool, each func(s Sample, passed bool)) (expected int)

// Validator runs validation windows: it is a proxy.Observer (live and
// preview traffic), drives the shadow mirror and the synthetic suite, and
// evaluates the gates. The rollout controller uses it through a small
// interface.
type Validator struct {
	gates     atomic.Pointer[Gates] // SetGates replaces them
	mirror    *shadow.Mirror        // nil: no shadow traffic
	synthetic SyntheticFunc         // nil: no suite
	run       atomic.Pointer[Run]

	// Adjust, when set, sees every sample before it is recorded, with the
	// name of the pool it measures, and may change it. Tests use it to
	// take a loaded machine's scheduling noise out of the timings. Set it
	// before the first Start; nil records samples as measured.
	Adjust func(pool string, s *Sample)

	// Remote, when set, returns the other gateways' samples of the
	// current window, read no earlier than since (when the window began),
	// so that another window's are never merged (a fleet's leader merges
	// them before the gates). Set it before the first Start; nil: this
	// gateway's samples only.
	Remote func(since time.Time) []Aggregate
	// Unanswered, when set, returns how long each of this gateway's shadow
	// copies still in flight has waited (shadow.Mirror.Unanswered): in a
	// fleet, where the recorder drives the mirror, the leader's own. Set
	// it before the first Start; nil: the mirror's given to NewValidator.
	Unanswered func() []time.Duration
	began      atomic.Int64 // Unix ns of the last Stop, which every Start begins with

	mu     sync.Mutex // guards cancel
	cancel context.CancelFunc
}

var _ proxy.Observer = (*Validator)(nil)

// NewValidator returns a validator with the given gates, shadow mirror
// and synthetic runner (either may be nil).
func NewValidator(g Gates, mirror *shadow.Mirror, synthetic SyntheticFunc) *Validator {
	v := &Validator{mirror: mirror, synthetic: synthetic}
	v.gates.Store(&g)
	return v
}

// SetGates replaces the gates (a configuration reload): every evaluation
// from now on, of a window in progress too, uses them.
func (v *Validator) SetGates(g Gates) { v.gates.Store(&g) }

// Observe implements proxy.Observer: one atomic load when no run is on.
func (v *Validator) Observe(o *proxy.Observation) {
	if r := v.run.Load(); r != nil {
		r.observe(o)
	}
}

// AddPair records a shadow pair in the validation window in progress when
// it takes shadow copies of p's live pool (Start, not StartPost or
// StartCanary); otherwise it drops p. In a fleet, where the gateway's
// recorder drives the mirror (Recorder.Mirror), the leader's own pairs
// reach its window this way.
func (v *Validator) AddPair(p shadow.Pair) {
	if r := v.run.Load(); r != nil && r.baseline == nil && !r.realOnly && r.live == p.Live.Pool {
		r.AddPair(p)
	}
}

// Start begins a validation window of candidate against the live pool:
// shadow copies of live traffic, the synthetic suite, preview traffic.
func (v *Validator) Start(ctx context.Context, live string, candidate *pool.Pool) {
	v.Stop()
	r := &Run{live: live, candidate: candidate.Name, adjust: v.Adjust}
	ctx, cancel := context.WithCancel(ctx)
	v.mu.Lock()
	v.cancel = cancel
	v.mu.Unlock()
	if v.synthetic != nil {
		r.synExpected = -1 // unknown until the suite starts; keeps the gate inconclusive
	}
	v.run.Store(r)
	if v.mirror != nil {
		v.mirror.SetTarget(live, candidate, r.AddPair)
	}
	if v.synthetic != nil {
		go func() {
			n := v.synthetic(ctx, candidate, r.AddSynthetic)
			r.mu.Lock()
			r.synExpected = n
			r.mu.Unlock()
		}()
	}
}

// StartPost begins a post-promotion window: the now-live pool's traffic
// against a baseline recorded during validation.
func (v *Validator) StartPost(poolName string, baseline Stats) {
	v.Stop()
	v.run.Store(&Run{candidate: poolName, baseline: &baseline, adjust: v.Adjust})
}

// StartCanary begins a canary window: the candidate's real traffic
// against the live pool's over the same time, with no shadow copies or
// synthetic suite.
func (v *Validator) StartCanary(live, candidate string) {
	v.Stop()
	v.run.Store(&Run{live: live, candidate: candidate, adjust: v.Adjust, realOnly: true})
}

// Stop ends the window in progress, if any.
func (v *Validator) Stop() {
	v.began.Store(time.Now().UnixNano())
	v.run.Store(nil)
	if v.mirror != nil {
		v.mirror.Stop()
	}
	v.mu.Lock()
	if v.cancel != nil {
		v.cancel()
		v.cancel = nil
	}
	v.mu.Unlock()
}

// Evaluate computes the gates over the window so far and returns the live
// pool's stats (the baseline for later). With no window it returns nil.
func (v *Validator) Evaluate() ([]api.Gate, Stats) {
	r := v.run.Load()
	if r == nil {
		return nil, Stats{}
	}
	var remote []Aggregate
	if v.Remote != nil {
		remote = v.Remote(time.Unix(0, v.began.Load()))
	}
	in := r.inputsWith(remote)
	if in.SyntheticExpected < 0 {
		in.SyntheticExpected = max(1, in.SyntheticRun+1)
	}
	g := *v.gates.Load()
	if r.baseline == nil && !r.realOnly {
		switch {
		case v.Unanswered != nil:
			in.Unanswered = append(in.Unanswered, v.Unanswered()...)
		case v.mirror != nil:
			in.Unanswered = append(in.Unanswered, v.mirror.Unanswered()...)
		}
	} else {
		in.Unanswered = nil // no shadow copies judged in this window
	}
	if r.baseline != nil || r.realOnly {
		// After the promotion (and in a canary) there is no shadow or
		// suite, only traffic.
		g.ShadowMismatch.Enabled, g.Synthetic.Enabled = false, false
		in.SyntheticExpected = 0
	}
	return Evaluate(g, in), in.Baseline
}
