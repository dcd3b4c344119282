package rollout

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
	"github.com/cutover-dev/cutover/internal/validation"
)

// CanarySettings configure the canary strategy.
type CanarySettings struct {
	// Steps are run in order after warm-up (and validation); none means
	// the blue-green strategy (no canary phase).
	Steps []CanaryStep
	// AffinityHeader names the request header whose value keeps a
	// client on one version while the weights hold; "" for none.
	AffinityHeader string
	// AffinityHash names the body fields ("user", "first_message") whose
	// value keeps a client on one version when it sends no affinity
	// header; nil for none.
	AffinityHash []string
}

// CanaryStep is one weight held for at least Pause.
type CanaryStep struct {
	// Weight is the percentage (1-100) of new requests for the new
	// version.
	Weight int `json:"weight"`
	// Pause is the least time the step lasts; zero waits for promote.
	Pause time.Duration `json:"pause_ns"`
}

// CanaryState is where a canary deployment is in its steps; it is stored
// with the deployment so a restart resumes the same step, weight and
// deadline.
type CanaryState struct {
	// Step is the step in progress, from 1 (0: no canary).
	Step int `json:"step,omitempty"`
	// Weight is the step's share of new requests in percent; 0 once the
	// canary failed or was aborted.
	Weight int `json:"weight,omitempty"`
	// StepStartedAt is when the step began.
	StepStartedAt time.Time `json:"step_started_at,omitzero"`
	// StepEndsAt is when its pause ends; zero waits for promote.
	StepEndsAt time.Time `json:"step_ends_at,omitzero"`
	// Steps are the steps the canary runs, as configured when it began:
	// a restart with other rollout.canary.steps does not change a canary
	// in progress. Empty in states written before they were kept: the
	// configured ones then.
	Steps []CanaryStep `json:"steps,omitempty"`
}

// canarySteps returns the steps d's canary runs.
func (c *Controller) canarySteps(d *Deployment) []CanaryStep {
	if len(d.Canary.Steps) > 0 {
		return d.Canary.Steps
	}
	return c.opts.Canary.Steps
}

// canaryValidator is a Validator that can measure a canary's real
// traffic (validation.Validator is one).
type canaryValidator interface {
	StartCanary(live, candidate string)
}

var _ canaryValidator = (*validation.Validator)(nil)

// canaryRoute returns the pool that gets a share of new requests in st
// and that share; "" and 0 outside a canary. A deployment keeps its last
// step's weight while ready, until promote (100 %) or abort (0 %).
func canaryRoute(st *State) (string, int) {
	d := st.active()
	if d == nil || d.Canary.Step == 0 || (d.Phase != PhaseCanary && d.Phase != PhaseReady) || d.Pool == st.Live {
		return "", 0
	}
	return d.Pool, d.Canary.Weight
}

// canaryWeights is the status' weights: nil outside a canary.
func canaryWeights(st *State) map[string]int {
	name, w := canaryRoute(st)
	if name == "" {
		return nil
	}
	return map[string]int{st.Live: 100 - w, name: w}
}

// canaryRouteLocked sets the canary pool, weight and affinity of table t
// from the state. c.mu is held.
func (c *Controller) canaryRouteLocked(t *route.Table) {
	name, w := canaryRoute(&c.st)
	if e := t.Pools[name]; e != nil && w > 0 {
		t.Canary, t.CanaryWeight, t.AffinityHeader = e, w, c.opts.Canary.AffinityHeader
		t.AffinityHash = c.opts.Canary.AffinityHash
	}
}

// apiCanary is d's canary step for the API, nil without one.
func (c *Controller) apiCanary(d *Deployment) *api.Canary {
	if d.Canary.Step == 0 {
		return nil
	}
	cs := d.Canary
	return &api.Canary{Step: cs.Step, Steps: len(c.canarySteps(d)), Weight: cs.Weight, StepStartedAt: cs.StepStartedAt, StepEndsAt: cs.StepEndsAt}
}

// enterCanary starts step 1 when d enters the canary phase.
func (c *Controller) enterCanary(d *Deployment, now time.Time) {
	if d.Phase == PhaseCanary {
		d.Canary.Steps = slices.Clone(c.opts.Canary.Steps)
		c.startStep(d, 1, now)
		d.Reason += fmt.Sprintf("; canary step 1: %d%% of new requests", d.Canary.Weight)
	}
}

// startStep makes step n (from 1) the one in progress at now.
func (c *Controller) startStep(d *Deployment, n int, now time.Time) {
	steps := c.canarySteps(d)
	s := steps[n-1]
	d.Canary = CanaryState{Step: n, Weight: s.Weight, StepStartedAt: now, Steps: d.Canary.Steps}
	d.Deadline = time.Time{}
	if s.Pause > 0 {
		d.Canary.StepEndsAt = now.Add(s.Pause)
		d.Deadline = d.Canary.StepEndsAt
	}
}

// canaryGated reports whether the gates judge the canary's steps.
func (c *Controller) canaryGated() bool {
	_, ok := c.opts.Validator.(canaryValidator)
	return ok
}

// ensureCanaryWindow starts measuring d's step if it is not measured yet
// (a new step, a restart).
func (c *Controller) ensureCanaryWindow(d *Deployment) {
	c.mu.Lock()
	running := c.val.id == d.ID && !c.val.post
	c.mu.Unlock()
	if running {
		return
	}
	c.opts.Validator.(canaryValidator).StartCanary(d.From, d.Pool)
	c.mu.Lock()
	c.val = valState{id: d.ID, lastEval: c.now(), fails: map[string]int{}}
	c.mu.Unlock()
}

// reconcileCanary runs the step in progress: the gates judge the canary's
// real answers against the live pool's every interval; a gate failing
// FailureLimit times in a row ends the canary at once (weight 0, failed,
// on_fail). Once the pause is over and every gate passes, the next step
// starts, or after the last one the deployment is ready. A step with no
// pause waits for promote; a step whose gates cannot decide within the
// validation deadline after its pause fails ("no data" is never a pass).
// A step to 100 % is a switch: it waits for the preflight (see
// holdFullCanary).
func (c *Controller) reconcileCanary(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) error {
	steps := c.canarySteps(d)
	if d.Canary.Step < 1 || d.Canary.Step > len(steps) {
		return c.failCanary(ctx, d, fmt.Sprintf("canary step %d is not configured (%d steps)", d.Canary.Step, len(steps)), nil)
	}
	cs := d.Canary
	now := c.now()
	gated := c.canaryGated()
	gates, allPass, live, failed, err := c.canaryGates(ctx, d)
	if failed {
		return err
	}
	where := fmt.Sprintf("canary step %d/%d at %d%%", cs.Step, len(steps), cs.Weight)
	switch {
	case cs.StepEndsAt.IsZero():
		c.setNote(d.ID, where+": waiting for `cutover promote`"+gateNote(gates))
		return nil
	case now.Before(cs.StepEndsAt):
		c.setNote(d.ID, fmt.Sprintf("%s until %s%s", where, stamp(cs.StepEndsAt), gateNote(gates)))
		return nil
	case gated && !allPass:
		limit := cs.StepEndsAt.Add(c.opts.Validation.Deadline)
		if !now.Before(limit) {
			return c.failCanary(ctx, d, fmt.Sprintf("%s: the gates did not all pass within %s after the pause (%s)", where, c.opts.Validation.Deadline, summarizeGates(gates)), gates)
		}
		c.setNote(d.ID, fmt.Sprintf("%s: pause over, waiting for every gate to pass (until %s)%s", where, stamp(limit), gateNote(gates)))
		return nil
	}
	if cs.Step < len(steps) && steps[cs.Step].Weight == 100 && c.holdFullCanary(ctx, d, pools[d.Pool], cs.Step+1) {
		return nil
	}
	if gated {
		c.stopWindow() // the next step is measured afresh
	}
	if cs.Step == len(steps) {
		reason := fmt.Sprintf("canary passed its %d steps", len(steps))
		if gated {
			reason += ": " + summarizeGates(gates)
		}
		return c.advance(ctx, d.ID, PhaseCanary, PhaseReady, reason, func(s *State, d *Deployment, now time.Time) {
			c.keepGates(d, gates, live, gated)
			c.enterReady(s, d, now)
		})
	}
	return c.step(ctx, d.ID, PhaseCanary, func(_ *State, d *Deployment, now time.Time) []event {
		if d.Canary.Step != cs.Step {
			return nil
		}
		c.keepGates(d, gates, live, gated)
		c.startStep(d, cs.Step+1, now)
		d.Reason = fmt.Sprintf("canary step %d/%d: %d%% of new requests", d.Canary.Step, len(steps), d.Canary.Weight)
		if !d.Canary.StepEndsAt.IsZero() {
			d.Reason += " until " + stamp(d.Canary.StepEndsAt)
		}
		if gated {
			d.Reason += " (step " + fmt.Sprint(cs.Step) + ": " + summarizeGates(gates) + ")"
		}
		return []event{{Action: "canary_step", Deployment: d.ID, From: fmt.Sprintf("%d%%", cs.Weight), To: fmt.Sprintf("%d%%", d.Canary.Weight), Reason: d.Reason}}
	})
}

// canaryGates evaluates the gates on d's canary traffic when an interval
// has passed (else returns the last values). A gate failing FailureLimit
// times in a row fails d at once (failed true, with the commit's error).
// Without a canary validator every step passes on its pause alone.
func (c *Controller) canaryGates(ctx context.Context, d *Deployment) (gates []api.Gate, allPass bool, live validation.Stats, failed bool, err error) {
	if !c.canaryGated() {
		return nil, true, validation.Stats{}, false, nil
	}
	c.ensureCanaryWindow(d)
	g, bad, pass, l, ok := c.evaluate(false)
	if !ok {
		gates = c.gatesFor(d.ID)
		return gates, allPassing(gates), validation.Stats{}, false, nil
	}
	if bad != nil {
		c.stopWindow()
		cs := d.Canary
		return g, false, l, true, c.failCanary(ctx, d, fmt.Sprintf("canary failed at step %d (%d%%): gate %s for %d consecutive evaluations (%s)",
			cs.Step, cs.Weight, describeGate(bad), bad.ConsecutiveFailures, bad.Detail), g)
	}
	return g, pass, l, false, nil
}

// canaryWatched reports whether d's canary traffic is measured: while it
// steps, and while ready with the last step's weight.
func canaryWatched(d *Deployment) bool {
	return d.Phase == PhaseCanary || (d.Phase == PhaseReady && d.Canary.Weight > 0)
}

// watchReadyCanary keeps the gates on a ready deployment that still has
// its last step's weight; stop is true when it failed the deployment.
func (c *Controller) watchReadyCanary(ctx context.Context, d *Deployment) (stop bool, err error) {
	if !canaryWatched(d) || d.Phase != PhaseReady {
		return false, nil
	}
	_, _, _, failed, err := c.canaryGates(ctx, d)
	return failed, err
}

// keepGates records a passed step's gates, and the live pool's stats as
// the post-promotion baseline.
func (c *Controller) keepGates(d *Deployment, gates []api.Gate, live validation.Stats, gated bool) {
	if !gated {
		return
	}
	d.Gates = gates
	b := live
	d.Baseline = &b
}

// failCanary sets the weight to 0 and fails d with reason (on_fail runs).
func (c *Controller) failCanary(ctx context.Context, d *Deployment, reason string, gates []api.Gate) error {
	return c.advance(ctx, d.ID, d.Phase, PhaseFailed, reason+"; every request goes to "+d.From+" again", func(_ *State, d *Deployment, _ time.Time) {
		d.Canary.Weight = 0
		if gates != nil {
			d.Gates = gates
		}
	})
}

func gateNote(gates []api.Gate) string {
	if len(gates) == 0 {
		return ""
	}
	return "; gates: " + summarizeGates(gates)
}

// canaryChanged reports whether a and b route a different share of new
// requests to a canary: the data plane needs a new table.
func canaryChanged(a, b *State) bool {
	an, aw := canaryRoute(a)
	bn, bw := canaryRoute(b)
	return an != bn || aw != bw
}

// decideCanaryRollback decides a rollback while a canary gets a share of
// new requests: it sets the weight to 0 (the deployment ends aborted),
// since the last switch was never made. ok is false when no canary gets
// requests; decideRollback then decides as usual.
func decideCanaryRollback(v View, req api.RollbackRequest) (dec Decision, ok bool) {
	st := v.State
	name, w := canaryRoute(&st)
	d := st.active()
	if name == "" || w == 0 || d == nil {
		return Decision{}, false
	}
	if req.To != "" && req.To != d.From {
		return deny("no_target", "cannot roll back to %s: deployment %s is a canary beside %s; rollback sets its weight to 0", req.To, d.ID, d.From), true
	}
	dec = allow("the canary of deployment %s (model %s in %s, %d%% of new requests) stops: %s gets every new request again; the deployment ends aborted", d.ID, d.Model, d.Pool, w, d.From)
	dec.Deployment, dec.Target = d.ID, d.From
	return dec, true
}

// rollbackCanaryLocked carries out a rollback during a canary (see
// decideCanaryRollback); ok is false when there is none. c.tmu is held.
func (c *Controller) rollbackCanaryLocked(ctx context.Context, actor string, req api.RollbackRequest) (res api.SwitchResult, ok bool, err error) {
	v := c.view()
	if _, fresh := checkRevision(v, req.ExpectedRevision); !fresh {
		return res, false, nil // decideRollback refuses it
	}
	dec, ok := decideCanaryRollback(v, req)
	if !ok {
		return res, false, nil
	}
	if !dec.Allowed {
		return res, true, dec.refusal()
	}
	err = c.commit(ctx, actor, func(s *State) ([]event, error) {
		if name, w := canaryRoute(s); name == "" || w == 0 || s.active() == nil || s.active().ID != dec.Deployment {
			return nil, changedMeanwhile("rollback", fmt.Sprintf("the canary of deployment %s is over", dec.Deployment))
		}
		d := s.find(dec.Deployment)
		from, w := d.Phase, d.Canary.Weight
		d.enter(PhaseAborted, c.now().UTC(), fmt.Sprintf("rolled back by %s while %s at %d%%: every new request goes to %s again", actor, from, w, d.From), time.Time{})
		d.Canary.Weight = 0
		return []event{{Action: "rollback", Deployment: d.ID, From: fmt.Sprintf("%d%%", w), To: "0%", Reason: d.Reason}}, nil
	})
	if err == nil {
		c.poke()
	}
	note := fmt.Sprintf("stopped the canary of deployment %s: %s no longer gets new requests, %s gets them all; the deployment is aborted", dec.Deployment, v.State.find(dec.Deployment).Pool, v.State.Live)
	return api.SwitchResult{Action: "rollback", Live: v.State.Live, SwitchedAt: v.State.SwitchedAt, Revision: c.revision(), Note: note}, true, err
}

// holdFullCanary runs the preflight (preflight.go) before canary step n
// sends every new request to d's pool p, the same switch as a promote.
// held is true when it failed, or failed lately and waits for its next
// try: the canary then stays at its weight, the status saying why, and
// tries again with backoff (each try that fails is a preflight_failed
// event in the history).
func (c *Controller) holdFullCanary(ctx context.Context, d *Deployment, p *pool.Pool, n int) (held bool) {
	key := d.ID + " canary"
	c.mu.Lock()
	last := c.autoRetry[key]
	c.mu.Unlock()
	if c.now().Before(last.at) {
		return true // the note of the last try stays
	}
	c.tmu.Lock()
	err := c.checkPreflight(ctx, "controller", fmt.Sprintf("canary step %d/%d to 100%%", n, len(c.canarySteps(d))), d.ID, p)
	c.tmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.autoRetry, key)
		return false
	}
	wait := retireBackoff(last.tries + 1)
	c.autoRetry[key] = retry{at: c.now().Add(wait), tries: last.tries + 1}
	c.notes[d.ID] = fmt.Sprintf("canary held at %d%% (next try in %s): %v", d.Canary.Weight, wait, err)
	return true
}
