package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/validation"
)

// valState is the validation window in progress. It lives in memory: after
// a restart the window starts again (its deadline, stored, does not move).
type valState struct {
	id       string // deployment id; "" when none
	post     bool   // post-promotion window
	lastEval time.Time
	fails    map[string]int // consecutive failing evaluations per gate
	gates    []api.Gate
	// failedSeen: a gate reached its failure limit in this window (the
	// post-promotion window records it when it could not roll back).
	failedSeen bool
}

// skipPhase reports pre-cutover phases that are not configured.
func (c *Controller) skipPhase(p Phase) bool {
	return (p == PhaseValidating && !c.opts.Validation.Enabled) || (p == PhaseCanary && len(c.opts.Canary.Steps) == 0)
}

// gatesFor returns the live gates of deployment id while its window runs.
func (c *Controller) gatesFor(id string) []api.Gate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.val.id == id {
		return slices.Clone(c.val.gates)
	}
	return nil
}

// ensureWindow starts the validation (or post-promotion) window of d if it
// is not running yet, e.g. after a restart.
func (c *Controller) ensureWindow(ctx context.Context, d *Deployment, post bool, pools map[string]*pool.Pool) {
	c.mu.Lock()
	running := c.val.id == d.ID && c.val.post == post
	c.mu.Unlock()
	if running {
		return
	}
	if post {
		base := validation.Stats{}
		if d.Baseline != nil {
			base = *d.Baseline
		}
		c.opts.Validator.StartPost(d.Pool, base)
	} else {
		c.opts.Validator.Start(ctx, d.From, pools[d.Pool])
	}
	c.mu.Lock()
	c.val = valState{id: d.ID, post: post, lastEval: c.now(), fails: map[string]int{}}
	c.mu.Unlock()
}

// endWindowOf stops the post-promotion window of deployment id if it runs
// (a forced retire ended it).
func (c *Controller) endWindowOf(id string) {
	c.mu.Lock()
	running := c.val.id == id && c.val.post
	c.mu.Unlock()
	if running {
		c.stopWindow()
	}
}

func (c *Controller) stopWindow() {
	c.opts.Validator.Stop()
	c.mu.Lock()
	c.val = valState{}
	c.mu.Unlock()
}

// evaluate runs the gates when an interval has passed. It returns the
// gates, a gate that failed FailureLimit times in a row (nil if none),
// whether every gate passed, and the live stats; ok is false when no
// evaluation was due.
func (c *Controller) evaluate(force bool) (gates []api.Gate, failed *api.Gate, allPass bool, live validation.Stats, ok bool) {
	now := c.now()
	c.mu.Lock()
	due := force || now.Sub(c.val.lastEval) >= c.opts.Validation.Interval
	c.mu.Unlock()
	if !due {
		return nil, nil, false, validation.Stats{}, false
	}
	gates, live = c.opts.Validator.Evaluate()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.val.lastEval = now
	allPass = true
	for i := range gates {
		g := &gates[i]
		if g.Verdict == validation.Fail {
			c.val.fails[g.Name]++
		} else {
			c.val.fails[g.Name] = 0
		}
		g.ConsecutiveFailures = c.val.fails[g.Name]
		if g.Verdict != validation.Pass {
			allPass = false
		}
		if g.ConsecutiveFailures >= c.opts.Validation.FailureLimit && failed == nil {
			failed = g
			c.val.failedSeen = true
		}
	}
	c.val.gates = gates
	return gates, failed, allPass, live, true
}

func describeGate(g *api.Gate) string {
	return fmt.Sprintf("%s = %g (threshold %s %g, %d samples)", g.Name, g.Value, g.Op, g.Threshold, g.Samples)
}

// reconcileValidating runs the validation window: it passes when every
// gate passes (after MinDuration), fails when a gate fails FailureLimit
// evaluations in a row, and fails at the deadline otherwise — "no data" is
// never a pass.
func (c *Controller) reconcileValidating(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) error {
	c.ensureWindow(ctx, d, false, pools)
	now := c.now()
	atDeadline := !d.Deadline.IsZero() && !now.Before(d.Deadline)
	// At the deadline, one last evaluation decides: a candidate that
	// passes then is not failed for timing.
	gates, failed, allPass, live, ok := c.evaluate(atDeadline)
	if !ok {
		return nil
	}
	c.setNote(d.ID, summarizeGates(gates))
	switch {
	case failed != nil:
		c.stopWindow()
		reason := fmt.Sprintf("validation failed: gate %s for %d consecutive evaluations (%s)", describeGate(failed), failed.ConsecutiveFailures, failed.Detail)
		return c.advance(ctx, d.ID, PhaseValidating, PhaseFailed, reason+"; "+d.Pool+" never received client traffic", func(_ *State, d *Deployment, _ time.Time) { d.Gates = gates })
	case allPass && len(gates) > 0 && now.Sub(d.PhaseSince) >= c.opts.Validation.MinDuration:
		c.stopWindow()
		next := nextPreCutover(PhaseValidating, c.skipPhase)
		reason := "validation passed: " + summarizeGates(gates)
		return c.advance(ctx, d.ID, PhaseValidating, next, reason, func(s *State, d *Deployment, now time.Time) {
			d.Gates = gates
			b := live
			d.Baseline = &b
			c.enterReady(s, d, now)
		})
	case atDeadline:
		c.stopWindow()
		var short, undecided, failing []string
		for _, g := range gates {
			switch {
			case g.Verdict == validation.Inconclusive && g.Samples >= g.MinSamples && g.Samples > 0:
				undecided = append(undecided, g.Name+": "+g.Detail) // copies left hanging
			case g.Verdict == validation.Inconclusive:
				short = append(short, fmt.Sprintf("%s %d/%d", g.Name, g.Samples, g.MinSamples))
			case g.Verdict == validation.Fail:
				failing = append(failing, describeGate(&g))
			}
		}
		reason := fmt.Sprintf("validation deadline %s passed", c.opts.Validation.Deadline)
		if len(short) > 0 {
			reason += ": not enough samples (" + strings.Join(short, ", ") + ")"
		}
		if len(undecided) > 0 {
			reason += ": undecided: " + strings.Join(undecided, "; ")
		}
		if len(failing) > 0 {
			reason += ": failing " + strings.Join(failing, "; ")
		}
		return c.advance(ctx, d.ID, PhaseValidating, PhaseFailed, reason+"; "+d.Pool+" never received client traffic", func(_ *State, d *Deployment, _ time.Time) { d.Gates = gates })
	}
	return nil
}

// allPassing reports gates that all pass (and at least one).
func allPassing(gates []api.Gate) bool {
	for _, g := range gates {
		if g.Verdict != validation.Pass {
			return false
		}
	}
	return len(gates) > 0
}

func summarizeGates(gates []api.Gate) string {
	parts := make([]string, 0, len(gates))
	for _, g := range gates {
		parts = append(parts, fmt.Sprintf("%s %s (%g, n=%d)", g.Name, g.Verdict, g.Value, g.Samples))
	}
	return strings.Join(parts, "; ")
}

// reconcilePostPromotion holds the new live pool to the gates for the
// window after the promotion. A gate failing FailureLimit evaluations in a
// row rolls back automatically to the retained pool, if it is healthy. It
// reports whether it rolled back.
func (c *Controller) reconcilePostPromotion(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) (bool, error) {
	if d.PostPromotionUntil.IsZero() {
		return false, nil
	}
	if !c.now().Before(d.PostPromotionUntil) {
		c.mu.Lock()
		active := c.val.id == d.ID && c.val.post
		gates, failedSeen := c.val.gates, c.val.failedSeen
		c.mu.Unlock()
		if active {
			c.stopWindow()
			action, reason := "post_promotion_passed", "post-promotion window ended, every gate passing: "
			switch {
			case failedSeen:
				action, reason = "post_promotion_failed", "post-promotion window ended after a gate failed and the rollback was impossible: "
			case !allPassing(gates):
				action, reason = "post_promotion_inconclusive", "post-promotion window ended without enough data to judge (no data is not a pass): "
			}
			return false, c.step(ctx, d.ID, PhasePromoted, func(_ *State, d *Deployment, _ time.Time) []event {
				d.Gates = gates
				return []event{{Action: action, Deployment: d.ID, Reason: reason + summarizeGates(gates)}}
			})
		}
		return false, nil
	}
	c.ensureWindow(ctx, d, true, pools)
	gates, failed, _, _, ok := c.evaluate(false)
	if !ok {
		return false, nil
	}
	if failed == nil {
		c.setNote(d.ID, "post-promotion checks: "+summarizeGates(gates))
		return false, nil
	}
	why := fmt.Sprintf("automatic rollback: gate %s failed after the promotion (%s)", describeGate(failed), failed.Detail)
	c.tmu.Lock()
	defer c.tmu.Unlock()
	st, _, cur := c.snapshot()
	if now := st.find(d.ID); now == nil || now.Phase != PhasePromoted {
		return false, nil
	}
	// The old pool is shrunk only after this window (see
	// keepRetainedShrunk): nothing to restore first.
	if _, err := c.rollbackDeployment(ctx, "controller", d.ID, why, 0, cur); err != nil {
		c.setNote(d.ID, "could not roll back automatically: "+err.Error())
		return false, c.commit(ctx, "controller", func(s *State) ([]event, error) {
			return []event{{Action: "auto_rollback_failed", Deployment: d.ID, Reason: why + "; " + err.Error()}}, nil
		})
	}
	c.stopWindow()
	return true, c.commit(ctx, "controller", func(s *State) ([]event, error) {
		s.find(d.ID).Gates = gates
		return nil, nil
	})
}
