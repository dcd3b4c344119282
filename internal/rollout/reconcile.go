package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/pool"
)

// Run reconciles every Tick, and at once after each transition, until ctx
// is done. It waits for its warm-up requests before returning.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Tick)
	defer t.Stop()
	// A leader that stops leading no longer tracks the replicas it took
	// out of rotation while asleep: they go back, for the health checks
	// (and the next leader) to judge.
	defer c.sleep.restoreRotation()
	defer c.warm.wait()
	defer c.shrinks.bg.Wait()
	var resumed sync.WaitGroup
	defer resumed.Wait()
	resumed.Go(func() { c.resumeLaunch(ctx) })   // a launch a previous controller left
	resumed.Go(func() { c.resumeRestores(ctx) }) // and its restores
	for {
		c.Reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
	}
}

// Reconcile takes one step: it runs pending hooks, then moves the
// deployment in progress forward if its phase's condition or deadline is
// met. Each step observes without holding the transition lock, then takes
// it and re-checks before committing. Tests call it directly.
func (c *Controller) Reconcile(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	defer c.recordHolding(ctx) // the retained pool put to sleep: GPUs asleep from now
	c.stopOrphans(ctx)
	st, _, _ := c.snapshot()
	for _, d := range st.Deployments {
		if len(d.PendingHooks) > 0 {
			c.runPendingHooks(ctx, d)
		}
	}
	st, _, pools := c.snapshot()
	c.restoreLater(ctx, &st)
	c.wakeLeftAsleep(ctx, &st, pools)
	c.stopStaleWindow(st)
	if d := st.active(); d != nil {
		var err error
		switch d.Phase {
		case PhaseWarming:
			err = c.reconcileWarming(ctx, d, pools)
		case PhaseValidating:
			err = c.reconcileValidating(ctx, d, pools)
		case PhaseCanary:
			err = c.reconcileCanary(ctx, d, pools)
		case PhaseReady:
			var stop bool
			if stop, err = c.watchReadyCanary(ctx, d); !stop {
				err = c.reconcileReady(ctx, d)
			}
		case PhasePromoted:
			err = c.reconcilePromoted(ctx, d, pools)
		case PhaseRetiring:
			err = c.reconcileRetiring(ctx, d, pools)
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile", "deployment", d.ID, "phase", d.Phase, "error", err)
		}
		return
	}
	if d := st.pending(); d != nil {
		c.startPending(ctx, d.ID)
	}
}

// stopStaleWindow ends a validation window whose deployment moved on
// (aborted, rolled back by hand).
func (c *Controller) stopStaleWindow(st State) {
	c.mu.Lock()
	id, post := c.val.id, c.val.post
	c.mu.Unlock()
	if id == "" {
		return
	}
	d := st.find(id)
	if d == nil || (!post && d.Phase != PhaseValidating && !canaryWatched(d)) || (post && d.Phase != PhasePromoted) {
		c.stopWindow()
	}
}

// step commits fn if deployment id is still in phase want.
func (c *Controller) step(ctx context.Context, id string, want Phase, fn func(s *State, d *Deployment, now time.Time) []event) error {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
		d := s.find(id)
		if d == nil || d.Phase != want {
			return nil, errStale
		}
		return fn(s, d, c.now().UTC()), nil
	})
	if errors.Is(err, errStale) {
		return nil
	}
	if err == nil {
		c.setNote(id, "") // what it waited for is over
		c.poke()
	}
	return err
}

var errStale = errors.New("deployment moved on")

// advance moves d from phase from to to, with a reason.
func (c *Controller) advance(ctx context.Context, id string, from, to Phase, reason string, extra func(s *State, d *Deployment, now time.Time)) error {
	return c.step(ctx, id, from, func(s *State, d *Deployment, now time.Time) []event {
		d.enter(to, now, reason, time.Time{})
		switch to {
		case PhaseReady:
			d.ReadyAt = now
		case PhaseFailed:
			c.pend(d, "on_fail")
		}
		if extra != nil {
			extra(s, d, now)
		}
		return []event{{Action: "phase", Deployment: id, From: string(from), To: string(to), Reason: reason}}
	})
}

// fail ends d in failed with reason.
func (c *Controller) fail(ctx context.Context, d *Deployment, reason string) error {
	return c.advance(ctx, d.ID, d.Phase, PhaseFailed, reason+"; "+d.Pool+" never received client traffic", nil)
}

// reconcileWarming checks the new replicas (a health check recorded like
// the checker's), starts warm-up requests on healthy ones, and moves on
// when enough are healthy and warmed. A replica serving another model
// fails the deployment at once; the progress deadline fails it with what
// each replica still lacks.
func (c *Controller) reconcileWarming(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) error {
	p := pools[d.Pool]
	now := c.now()
	errs := c.probeAll(ctx, p.Replicas, p.Model)
	if ctx.Err() != nil {
		return nil
	}
	set := c.opts.Settings
	ready := 0
	var waiting []string
	for i, r := range p.Replicas {
		err := errs[i]
		r.RecordCheck(now, err, set.Rise, set.Fall)
		var mm *pool.ModelMismatchError
		if errors.As(err, &mm) {
			return c.fail(ctx, d, fmt.Sprintf("replica %s serves the wrong model: %v", r.Name, err))
		}
		switch ws := c.warm.state(d.ID, r.Name); {
		case !r.Healthy():
			last := r.Health().LastError
			if last == "" {
				last = "waiting for consecutive passing checks"
			}
			waiting = append(waiting, fmt.Sprintf("%s: health check: %s", r.Name, last))
		case ws.done:
			ready++
		case ws.running:
			waiting = append(waiting, fmt.Sprintf("%s: warming up", r.Name))
		default:
			if ws.err != "" {
				waiting = append(waiting, fmt.Sprintf("%s: warm-up failed: %s", r.Name, ws.err))
			} else {
				waiting = append(waiting, fmt.Sprintf("%s: warm-up starting", r.Name))
			}
			if now.After(ws.retryAt) {
				c.warm.start(ctx, c, d.ID, r, p.Model)
			}
		}
	}
	need := c.need(p)
	if ready >= need {
		c.setNote(d.ID, "")
		next := nextPreCutover(PhaseWarming, c.skipPhase)
		reason := fmt.Sprintf("%d/%d replicas healthy, serving %s and warmed up", ready, len(p.Replicas), p.Model)
		return c.advance(ctx, d.ID, PhaseWarming, next, reason, func(s *State, d *Deployment, now time.Time) {
			if next == PhaseValidating {
				d.Deadline = now.Add(c.opts.Validation.Deadline)
				d.Reason += "; validating against " + d.From
			}
			c.enterReady(s, d, now)
		})
	}
	note := fmt.Sprintf("%d/%d ready (need %d): %s", ready, len(p.Replicas), need, strings.Join(waiting, "; "))
	c.setNote(d.ID, note)
	if !d.Deadline.IsZero() && !now.Before(d.Deadline) {
		return c.fail(ctx, d, fmt.Sprintf("progress deadline %s passed in warming: %s", c.opts.Settings.ProgressDeadline, note))
	}
	return nil
}

// enterReady sets the auto-promotion deadline when the phase is ready.
func (c *Controller) enterReady(_ *State, d *Deployment, now time.Time) {
	c.enterCanary(d, now)
	if d.Phase == PhaseReady {
		d.Deadline = time.Time{}
	}
	if d.Phase == PhaseReady && c.opts.Settings.AutoPromote {
		d.Deadline = now.Add(c.opts.Settings.AutoPromoteAfter)
		d.Reason += fmt.Sprintf("; auto-promotion at %s", stamp(d.Deadline))
	}
}

// reconcileReady promotes by itself once the auto-promotion time is due.
func (c *Controller) reconcileReady(ctx context.Context, d *Deployment) error {
	if !c.opts.Settings.AutoPromote || d.Deadline.IsZero() || c.now().Before(d.Deadline) {
		return nil
	}
	// The back-off is read under the transition lock: two reconciles
	// that both passed it before either took the lock would run
	// before_promote twice.
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.mu.Lock()
	next, tries := c.autoRetry[d.ID].at, c.autoRetry[d.ID].tries
	c.mu.Unlock()
	if c.now().Before(next) {
		return nil // a refused auto-promotion waits before trying again
	}
	st, _, _ := c.snapshot()
	if cur := st.find(d.ID); cur == nil || cur.Phase != PhaseReady {
		return nil
	}
	_, err := c.promoteDeployment(ctx, "controller", d.ID)
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			wait := retireBackoff(tries + 1)
			c.mu.Lock()
			c.autoRetry[d.ID] = retry{at: c.now().Add(wait), tries: tries + 1}
			c.mu.Unlock()
			c.setNote(d.ID, fmt.Sprintf("auto-promotion blocked (next try in %s): %s", wait, r.Reason))
			return nil
		}
	}
	return err
}

// reconcilePromoted starts retirement when retention ends, unless the live
// pool has fewer healthy replicas than it needs: then the old pool, maybe
// the only healthy copy, is kept and rollback stays possible.
func (c *Controller) reconcilePromoted(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) error {
	if rolledBack, err := c.reconcilePostPromotion(ctx, d, pools); rolledBack || err != nil {
		return err
	}
	now := c.now()
	if now.Before(d.RetainUntil) {
		c.keepRetainedAsleep(ctx, d, pools)
		c.recordAsleep(ctx, d)
		c.keepRetainedShrunk(ctx, d, pools)
		return nil
	}
	live := pools[d.Pool]
	if h, need := live.HealthyCount(), c.need(live); h < need {
		c.setNote(d.ID, fmt.Sprintf("retirement of %s postponed: the live pool %s has %d/%d healthy replicas (need %d); rollback is still possible", d.From, d.Pool, h, len(live.Replicas), need))
		return nil
	}
	c.setNote(d.ID, "")
	drain := c.opts.Settings.DrainTimeout
	return c.step(ctx, d.ID, PhasePromoted, func(s *State, d *Deployment, now time.Time) []event {
		reason := fmt.Sprintf("retention ended at %s: %s gets no new requests; draining its in-flight requests (up to %s), then on_retire hooks", stamp(d.RetainUntil), d.From, drain)
		d.enter(PhaseRetiring, now, reason, now.Add(drain))
		return []event{{Action: "phase", Deployment: d.ID, From: string(PhasePromoted), To: string(PhaseRetiring), Reason: reason}}
	})
}

// fleetInFlight returns the requests in flight on p through every
// gateway of the fleet (as the others last reported), and how many of
// them are at the others; through this gateway alone without a fleet.
func (c *Controller) fleetInFlight(p *pool.Pool) (total int64, elsewhere int) {
	if c.opts.OthersInFlight != nil {
		elsewhere = c.opts.OthersInFlight(p.Name)
	}
	return p.InFlight() + int64(elsewhere), elsewhere
}

// reconcileRetiring waits for the old pool to drain (bounded), then runs
// the on_retire hooks, retrying failures with backoff until they pass or
// an operator forces retirement.
func (c *Controller) reconcileRetiring(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) error {
	now := c.now()
	old := pools[d.From]
	// In a fleet the old pool's streams run on every gateway, and
	// on_retire (or the agent) stops its replicas under all of them.
	inflight, elsewhere := c.fleetInFlight(old)
	if inflight > 0 && now.Before(d.Deadline) {
		note := fmt.Sprintf("draining %s: %d requests in flight", d.From, inflight)
		if elsewhere > 0 {
			note += fmt.Sprintf(" (%d at other gateways of the fleet, as they last reported)", elsewhere)
		}
		c.setNote(d.ID, note)
		return nil
	}
	if c.opts.EngineBusy != nil && now.Before(d.Deadline) {
		// Through a load balancer the streams are not this process's:
		// the engines say what they still serve.
		switch busy, err := c.opts.EngineBusy(ctx, old); {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.setNote(d.ID, fmt.Sprintf("draining %s until %s (drain_timeout): its engines' metrics cannot tell what requests the load balancer still has on it: %v", d.From, stamp(d.Deadline), err))
			return nil
		case busy > 0:
			c.setNote(d.ID, fmt.Sprintf("draining %s: its engines hold %d requests (running and waiting), sent through the load balancer", d.From, busy))
			return nil
		}
	}
	if !d.NextRetireAttempt.IsZero() && now.Before(d.NextRetireAttempt) {
		return nil
	}
	held := retireHoldKey(d.ID)
	c.mu.Lock()
	hold := c.autoRetry[held]
	c.mu.Unlock()
	if now.Before(hold.at) {
		c.setNote(d.ID, fmt.Sprintf("retiring %s: the on_retire outcome could not be saved (see state in status); next attempt at %s", d.From, stamp(hold.at)))
		return nil
	}
	if inflight > 0 {
		c.log.Warn("drain timeout: retiring with requests still in flight", "deployment", d.ID, "pool", d.From, "in_flight", inflight)
	}
	c.setNote(d.ID, "")
	var failed []hook.Outcome
	var outcomes []hook.Outcome
	runID := retireRunID(d)
	defer c.forgetRunning(ctx, runID)
	for _, spec := range c.hookSpecs("on_retire") {
		pl := c.payload("on_retire", d, d.From, d.FromModel, d.FromReplicas, d.Reason)
		pl.RunID = runID
		o := c.runTracked(ctx, d, spec, pl)
		if ctx.Err() != nil {
			return nil // shutting down: the hook runs again after restart
		}
		c.countHook(o)
		outcomes = append(outcomes, o)
		if !o.OK {
			failed = append(failed, o)
		}
	}
	var stopErr error
	if len(failed) == 0 && len(d.FromLaunched) > 0 {
		stopErr = c.stopLaunched(ctx, d.FromLaunched)
		if ctx.Err() != nil {
			return nil // shutting down: stopped again after restart
		}
	}
	err := c.step(ctx, d.ID, PhaseRetiring, func(s *State, d *Deployment, now time.Time) []event {
		s.clearRunning(runID)
		var evs []event
		for i := range outcomes {
			d.addOutcome(outcomes[i])
			evs = append(evs, event{Action: "hook", Deployment: d.ID, Hook: &outcomes[i], Reason: outcomes[i].Summary()})
		}
		if len(failed) > 0 || stopErr != nil {
			d.RetireAttempts++
			if len(failed) > 0 {
				d.RetireError = failed[0].Summary()
			} else {
				d.RetireError = fmt.Sprintf("stopping %s's %d replica(s) through the agents: %v", d.From, len(d.FromLaunched), stopErr)
			}
			d.NextRetireAttempt = now.Add(retireBackoff(d.RetireAttempts))
			evs = append(evs, event{Action: "retire_failed", Deployment: d.ID, Reason: fmt.Sprintf("%s; attempt %d, next at %s (`cutover retire` retries now, `cutover retire --force` gives up on the hook)", d.RetireError, d.RetireAttempts, stamp(d.NextRetireAttempt))})
			return evs
		}
		reason := fmt.Sprintf("%s retired: drained, %d on_retire hook(s) succeeded", d.From, len(outcomes))
		if len(outcomes) == 0 {
			reason = fmt.Sprintf("%s retired: drained (no on_retire hooks configured)", d.From)
		}
		if len(d.FromLaunched) > 0 {
			reason += fmt.Sprintf("; its %d replica(s) stopped through the agents", len(d.FromLaunched))
		}
		c.finishRetirement(s, d, now, reason)
		return append(evs, event{Action: "phase", Deployment: d.ID, From: string(PhaseRetiring), To: string(PhaseCompleted), Reason: reason})
	})
	c.mu.Lock()
	if err != nil && ctx.Err() == nil {
		// The hooks ran but their outcome is not on record (a full disk):
		// the next attempt waits as a failed one would, not a tick.
		c.autoRetry[held] = retry{at: c.now().Add(retireBackoff(hold.tries + 1)), tries: hold.tries + 1}
	} else {
		delete(c.autoRetry, held)
	}
	c.mu.Unlock()
	return err
}

// retireHoldKey is the autoRetry key that holds deployment id's next
// on_retire attempt after one whose outcome could not be saved.
func retireHoldKey(id string) string { return id + " retire" }

// retireBackoff is the wait before on_retire attempt n+1: 5s doubling, at
// most 5m.
func retireBackoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// startPending moves a pending deployment to warming once nothing else is
// in progress.
func (c *Controller) startPending(ctx context.Context, id string) {
	err := c.step(ctx, id, PhasePending, func(s *State, d *Deployment, now time.Time) []event {
		if s.active() != nil {
			return nil
		}
		if d.Pool == s.Live { // never deploy over the live pool
			r := fmt.Sprintf("aborted: its target pool %s is live", d.Pool)
			d.enter(PhaseAborted, now, r, time.Time{})
			return []event{{Action: "abort", Deployment: id, From: string(PhasePending), To: string(PhaseAborted), Reason: r}}
		}
		c.startWarming(s, d, now)
		return []event{{Action: "phase", Deployment: id, From: string(PhasePending), To: string(d.Phase), Reason: d.Reason}}
	})
	if err != nil {
		c.log.Warn("start pending deployment", "deployment", id, "error", err)
	}
}

// runPendingHooks runs the hooks of d's pending events, then records their
// outcomes and clears those events in one transition.
func (c *Controller) runPendingHooks(ctx context.Context, d *Deployment) {
	events := d.PendingHooks
	var outcomes []hook.Outcome
	runIDs := make([]string, len(events))
	for i := range events {
		runIDs[i] = d.pendingRunID(i)
	}
	defer c.forgetRunning(ctx, runIDs...)
	for i, ev := range events {
		pl := c.payload(ev, d, d.Pool, d.Model, d.Replicas, d.Reason)
		if ev == "on_rollback" {
			pl = c.payload(ev, d, d.From, d.FromModel, d.FromReplicas, d.Reason)
		}
		pl.RunID = runIDs[i]
		for _, spec := range c.hookSpecs(ev) {
			o := c.runTracked(ctx, d, spec, pl)
			if ctx.Err() != nil {
				return // shutting down: the hooks run again after restart
			}
			c.countHook(o)
			outcomes = append(outcomes, o)
		}
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
		s.clearRunning(runIDs...)
		cur := s.find(d.ID)
		if cur == nil {
			return nil, errStale
		}
		var evs []event
		for i := range outcomes {
			cur.addOutcome(outcomes[i])
			evs = append(evs, event{Action: "hook", Deployment: d.ID, Hook: &outcomes[i], Reason: outcomes[i].Summary()})
		}
		n := min(len(events), len(cur.PendingHooks))
		cur.PendingHooks = cur.PendingHooks[n:]
		cur.PendingRunIDs = cur.PendingRunIDs[min(n, len(cur.PendingRunIDs)):]
		s.trim() // deployments kept only for their hooks may go now
		return evs, nil
	})
	if err != nil && !errors.Is(err, errStale) {
		c.log.Warn("record hook outcomes", "deployment", d.ID, "error", err)
	}
}

// pend records that event's hooks must run for d, if any are configured.
func (c *Controller) pend(d *Deployment, event string) {
	if len(c.hookSpecs(event)) > 0 {
		c.mu.Lock()
		rev := c.rev + 1 // pend runs inside a commit: the revision it writes
		c.mu.Unlock()
		d.PendingHooks = append(d.PendingHooks, event)
		d.PendingRunIDs = append(d.PendingRunIDs, fmt.Sprintf("%s.%s.r%d", d.ID, event, rev))
	}
}

// payload describes an event of d for its hooks.
func (c *Controller) payload(event string, d *Deployment, poolName, model string, replicas []string, reason string) hook.Payload {
	c.mu.Lock()
	rev := c.rev
	c.mu.Unlock()
	return hook.Payload{Event: event, Deployment: d.ID, Pool: poolName, Model: model, Replicas: replicas, Revision: rev, Reason: reason,
		RunID: fmt.Sprintf("%s.%s.r%d", d.ID, event, rev)}
}
