package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/validation"
)

// canaryValidatorFake is the flow tests' fake validator that can also
// measure a canary.
type canaryValidatorFake struct{ *fakeValidator }

func (v canaryValidatorFake) StartCanary(_, candidate string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.starts = append(v.starts, "canary:"+candidate)
}

// newCanaryFx is newFx with the canary strategy over steps, gated by the
// fake validator (interval 5s, failure limit 2) when gated.
func newCanaryFx(t *testing.T, gated bool, steps ...CanaryStep) *fx {
	t.Helper()
	f := newFx(t, func(o *Options) {
		o.Canary = CanarySettings{Steps: steps, AffinityHeader: "X-Session-Id", AffinityHash: []string{"user"}}
	})
	if gated {
		f.opts.Validator = canaryValidatorFake{f.val}
		f.opts.Validation = ValidationSettings{Interval: 5 * time.Second, FailureLimit: 2, Deadline: time.Minute}
		f.restart()
	}
	return f
}

// checkWeight asserts the data plane's table and the status at weight w
// for green (0: no canary in the table, no weights in the status).
func (f *fx) checkWeight(w int) {
	f.t.Helper()
	tb := f.ap.last()
	s := f.c.Status()
	if w == 0 {
		if tb.Canary != nil || s.Weights != nil {
			f.t.Fatalf("want no canary: table canary %v at %d, status weights %v", tb.Canary != nil, tb.CanaryWeight, s.Weights)
		}
		return
	}
	if tb.Canary == nil || tb.Canary.Pool.Name != "green" || tb.CanaryWeight != w || tb.AffinityHeader != "X-Session-Id" || len(tb.AffinityHash) != 1 || tb.Live.Pool.Name != "blue" {
		f.t.Fatalf("table: canary %v weight %d affinity %q, want green at %d", tb.Canary != nil, tb.CanaryWeight, tb.AffinityHeader, w)
	}
	if s.Weights["green"] != w || s.Weights["blue"] != 100-w {
		f.t.Fatalf("status weights %v, want green %d", s.Weights, w)
	}
}

// TestCanarySteps: after warm-up the deployment is in phase canary at the
// first step's weight; a step advances only when its pause is over and
// the gates pass; each step is in the history; a restart mid-step resumes
// the same step with its original deadline; a step with no pause waits
// for promote, which goes to 100 % at once.
func TestCanarySteps(t *testing.T) {
	f := newCanaryFx(t, true, CanaryStep{Weight: 5, Pause: 10 * time.Minute}, CanaryStep{Weight: 25, Pause: 10 * time.Minute}, CanaryStep{Weight: 50})
	f.deploy(false)
	d := f.until(PhaseCanary)
	start := f.clk.Now().UTC()
	if d.Canary == nil || d.Canary.Step != 1 || d.Canary.Steps != 3 || d.Canary.Weight != 5 || !d.Canary.StepEndsAt.Equal(start.Add(10*time.Minute)) || d.DeadlineKind != "canary_step" {
		t.Fatalf("step 1: %+v (%s)", d.Canary, d.DeadlineKind)
	}
	f.checkWeight(5)
	f.step() // the window starts
	f.clk.Advance(9 * time.Minute)
	f.step()
	if d = f.latest(); d.Canary.Step != 1 || !strings.Contains(d.Waiting, "canary step 1/3 at 5%") {
		t.Fatalf("before the pause is over: step %d (%s)", d.Canary.Step, d.Waiting)
	}
	f.val.set(validation.Inconclusive)
	f.clk.Advance(time.Minute)
	f.step()
	if d = f.latest(); d.Canary.Step != 1 || !strings.Contains(d.Waiting, "waiting for every gate to pass") {
		t.Fatalf("pause over, gates inconclusive: step %d (%s)", d.Canary.Step, d.Waiting)
	}
	f.val.set(validation.Pass)
	f.clk.Advance(5 * time.Second)
	f.step()
	d = f.latest()
	if d.Phase != string(PhaseCanary) || d.Canary.Step != 2 || d.Canary.Weight != 25 {
		t.Fatalf("after step 1: %s %+v (%s)", d.Phase, d.Canary, d.Reason)
	}
	f.checkWeight(25)
	if e := f.lastEvent("canary_step"); e.From != "5%" || e.To != "25%" || !strings.Contains(e.Reason, "error_rate pass") {
		t.Fatalf("history: %+v", e)
	}
	ends := d.Canary.StepEndsAt
	f.restart()
	if d = f.latest(); d.Canary.Step != 2 || d.Canary.Weight != 25 || !d.Canary.StepEndsAt.Equal(ends) {
		t.Fatalf("after a restart: %+v, want step 2 ending %s", d.Canary, ends)
	}
	f.checkWeight(25)
	f.step()
	f.clk.Advance(10 * time.Minute)
	f.step()
	if d = f.latest(); d.Canary.Step != 3 || d.Canary.Weight != 50 || !d.Canary.StepEndsAt.IsZero() {
		t.Fatalf("step 3: %+v", d.Canary)
	}
	f.checkWeight(50)
	f.clk.Advance(24 * time.Hour)
	f.step()
	if d = f.latest(); d.Phase != string(PhaseCanary) || d.Canary.Step != 3 || !strings.Contains(d.Waiting, "cutover promote") {
		t.Fatalf("a step with no pause waits for promote: %s %+v (%s)", d.Phase, d.Canary, d.Waiting)
	}
	if a := f.c.Status().Actions["promote"]; !a.Allowed {
		t.Fatalf("promote during a canary: %+v", a)
	}
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	if tb := f.ap.last(); tb.Live.Pool.Name != "green" || tb.Canary != nil {
		t.Fatalf("promoted: live %s, canary %v", tb.Live.Pool.Name, tb.Canary != nil)
	}
	if s := f.c.Status(); s.Weights != nil || s.Deployment.Phase != string(PhasePromoted) {
		t.Fatalf("promoted: %s weights %v", s.Deployment.Phase, s.Weights)
	}
}

// TestCanaryLastStepThenReady: without gates, steps advance on their
// pause alone; after the last one the deployment is ready with the last
// weight until promote.
func TestCanaryLastStepThenReady(t *testing.T) {
	f := newCanaryFx(t, false, CanaryStep{Weight: 20, Pause: time.Minute})
	f.deploy(false)
	f.until(PhaseCanary)
	f.checkWeight(20)
	f.clk.Advance(time.Minute)
	d := f.until(PhaseReady)
	if !strings.Contains(d.Reason, "canary passed its 1 steps") {
		t.Fatalf("ready: %s", d.Reason)
	}
	f.checkWeight(20)
}

// TestCanaryGateFailureDropsToZero: a gate failing failure_limit times in
// a row sets the weight to 0 at once and fails the deployment with the
// gate as reason; on_fail runs; the live pool serves everything.
func TestCanaryGateFailureDropsToZero(t *testing.T) {
	f := newCanaryFx(t, true, CanaryStep{Weight: 25, Pause: 10 * time.Minute})
	f.deploy(false)
	f.until(PhaseCanary)
	f.checkWeight(25)
	f.step() // the window starts
	f.val.set(validation.Fail)
	f.clk.Advance(5 * time.Second)
	f.step()
	if d := f.latest(); d.Phase != string(PhaseCanary) {
		t.Fatalf("one failing evaluation of two allowed: %s", d.Phase)
	}
	f.clk.Advance(5 * time.Second)
	d := f.until(PhaseFailed)
	if !strings.Contains(d.Reason, "gate error_rate") || !strings.Contains(d.Reason, "2 consecutive") || d.Canary.Weight != 0 {
		t.Fatalf("failed: %s %+v", d.Reason, d.Canary)
	}
	f.checkWeight(0)
	if tb := f.ap.last(); tb.Live.Pool.Name != "blue" {
		t.Fatalf("live %s", tb.Live.Pool.Name)
	}
	f.step() // runs the pending hooks
	if !slices.ContainsFunc(f.hooks.ran(), func(s string) bool { return strings.HasPrefix(s, "on_fail") }) {
		t.Fatalf("on_fail did not run: %v", f.hooks.ran())
	}
}

// TestCanaryAbort: abort during a canary sets the weight to 0 at once.
func TestCanaryAbort(t *testing.T) {
	f := newCanaryFx(t, false, CanaryStep{Weight: 10, Pause: time.Hour})
	f.deploy(false)
	f.until(PhaseCanary)
	f.checkWeight(10)
	if a := f.c.Status().Actions["abort"]; !a.Allowed || !strings.Contains(a.Reason, "canary share of 10% of new requests goes back to blue") {
		t.Fatalf("abort action during a canary: %+v", a)
	}
	if _, err := f.c.Abort(f.ctx, "op", api.AbortRequest{}); err != nil {
		t.Fatal(err)
	}
	f.checkWeight(0)
	if d := f.latest(); d.Phase != string(PhaseAborted) || d.Canary.Weight != 0 || !strings.Contains(d.Reason, "while canary at 10%; every request goes to blue again") {
		t.Fatalf("aborted: %s %+v (%s)", d.Phase, d.Canary, d.Reason)
	}
}

// TestCanaryFleetFollows: another gateway of the fleet following the
// store applies each step's weight, as it applies a promotion.
func TestCanaryFleetFollows(t *testing.T) {
	f := newCanaryFx(t, false, CanaryStep{Weight: 5, Pause: time.Minute}, CanaryStep{Weight: 25, Pause: time.Minute})
	f.deploy(false)
	f.until(PhaseCanary)
	other := &recorder{}
	opts := f.opts
	opts.Applier = other
	c2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	if tb := other.last(); tb.Canary == nil || tb.CanaryWeight != 5 {
		t.Fatalf("second gateway at start: canary %v weight %d", tb.Canary != nil, tb.CanaryWeight)
	}
	f.clk.Advance(time.Minute)
	f.step()
	f.checkWeight(25)
	rec, err := f.st.Get(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Follow(f.ctx, rec); err != nil {
		t.Fatal(err)
	}
	if tb := other.last(); tb.Canary == nil || tb.CanaryWeight != 25 {
		t.Fatalf("second gateway after the step: canary %v weight %d", tb.Canary != nil, tb.CanaryWeight)
	}
}

// TestCanaryRollback: rollback during a canary sets the weight to 0 and
// ends the deployment aborted; the live pool does not change.
func TestCanaryRollback(t *testing.T) {
	f := newCanaryFx(t, false, CanaryStep{Weight: 30, Pause: time.Hour})
	f.deploy(false)
	f.until(PhaseCanary)
	if a := f.c.Status().Actions["rollback"]; !a.Allowed || !strings.Contains(a.Reason, "30% of new requests") {
		t.Fatalf("rollback action during a canary: %+v", a)
	}
	// What protects blue says what a rollback does now: blue is live
	// already (it said "rollback makes blue live again").
	if p := f.c.Status().Protection.Summary; !strings.Contains(p, "rollback: the canary of deployment d-1") || strings.Contains(p, "live again") {
		t.Fatalf("protection during a canary: %q", p)
	}
	_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{To: "green"})
	refused(t, err, "no_target", "rollback sets its weight to 0")
	res, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
	if err != nil || res.Live != "blue" || res.Previous != "" || !strings.Contains(res.Note, "stopped the canary of deployment d-1: green no longer gets new requests") {
		t.Fatalf("rollback: %+v %v, want a note saying it stopped the canary (the CLI printed \"blue is live (was )\")", res, err)
	}
	f.checkWeight(0)
	if d := f.latest(); d.Phase != string(PhaseAborted) || !strings.Contains(d.Reason, "rolled back by op while canary at 30%") {
		t.Fatalf("after the rollback: %s (%s)", d.Phase, d.Reason)
	}
	if e := f.lastEvent("rollback"); e.From != "30%" || e.To != "0%" {
		t.Fatalf("history: %+v", e)
	}
}

// TestCanaryReadyStillGated: after the last step the deployment is ready
// with the last weight, and the gates still watch it: a failing gate
// drops the weight to 0 before anyone promotes.
func TestCanaryReadyStillGated(t *testing.T) {
	f := newCanaryFx(t, true, CanaryStep{Weight: 20, Pause: time.Minute})
	f.deploy(false)
	f.until(PhaseCanary)
	f.step() // the window starts
	f.clk.Advance(time.Minute)
	f.until(PhaseReady)
	f.checkWeight(20)
	f.step() // a window on the ready canary starts
	f.val.set(validation.Fail)
	f.clk.Advance(5 * time.Second)
	f.step()
	f.clk.Advance(5 * time.Second)
	d := f.until(PhaseFailed)
	if !strings.Contains(d.Reason, "gate error_rate") || d.Canary.Weight != 0 {
		t.Fatalf("failed while ready: %s %+v", d.Reason, d.Canary)
	}
	f.checkWeight(0)
}

// TestCanaryKeepsItsStepsAcrossARestart: a canary in progress runs the
// steps it began with, whatever rollout.canary.steps says after a
// restart (fewer steps, other weights, none). Before, a restart with one
// step less failed a canary at its last step ("canary step 2 is not
// configured") and ran on_fail.
func TestCanaryKeepsItsStepsAcrossARestart(t *testing.T) {
	f := newCanaryFx(t, false, CanaryStep{Weight: 10, Pause: 10 * time.Minute}, CanaryStep{Weight: 40, Pause: 10 * time.Minute})
	f.deploy(false)
	f.until(PhaseCanary)
	f.clk.Advance(10 * time.Minute)
	f.step()
	if d := f.latest(); d.Canary == nil || d.Canary.Step != 2 {
		t.Fatalf("step 2 not reached: %+v", d.Canary)
	}
	for _, steps := range [][]CanaryStep{{{Weight: 70, Pause: time.Minute}}, nil} {
		f.opts.Canary.Steps = steps
		f.restart()
		f.step()
		d := f.latest()
		if d.Phase != string(PhaseCanary) || d.Canary == nil || d.Canary.Step != 2 || d.Canary.Steps != 2 || d.Canary.Weight != 40 {
			t.Fatalf("after a restart with steps %v: %s %+v (%s)", steps, d.Phase, d.Canary, d.Reason)
		}
		f.checkWeight(40)
	}
	f.clk.Advance(10 * time.Minute)
	if d := f.until(PhaseReady); d.Canary == nil || d.Canary.Weight != 40 {
		t.Fatalf("ready: %+v", d.Canary)
	}
}
