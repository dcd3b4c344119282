package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/store"
)

// Promote makes the standby pool live. With a deployment in progress it
// must be ready, and the before_promote hooks must pass; without one it is
// a plain switch, refused when the standby holds a deployment that failed,
// was aborted or was rolled back unless req.Force (then recorded as
// forced). Either way it refuses (with a *Refusal) when the standby cannot
// serve: no replica healthy, none answering a fresh check with its
// model, or too few answering a real completion right before the switch
// (preflight.go). Nothing changes then. See decidePromote.
func (c *Controller) Promote(ctx context.Context, actor string, req api.PromoteRequest) (_ api.SwitchResult, err error) {
	ctx, end := c.span(ctx, "promote", actor)
	defer func() { end(err) }()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	dec := decidePromote(c.view(), req)
	if !dec.Allowed {
		return api.SwitchResult{}, dec.refusal()
	}
	if dec.Deployment != "" && !dec.Forced {
		return c.promoteDeployment(ctx, actor, dec.Deployment)
	}
	return c.plainSwitch(ctx, "promote", dec, actor)
}

// Rollback undoes the last switch. Inside a deployment's retention it is
// instant: the retained pool needs a healthy replica, and its healthy
// replicas must answer the preflight completion (preflight.go).
// After the old pool was retired it is refused with the time. A second
// rollback in a row is refused unless req.To names the pool. See
// decideRollback.
func (c *Controller) Rollback(ctx context.Context, actor string, req api.RollbackRequest) (_ api.SwitchResult, err error) {
	ctx, end := c.span(ctx, "rollback", actor)
	defer func() { end(err) }()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	return c.rollbackLocked(ctx, actor, "rollback", req)
}

func (c *Controller) rollbackLocked(ctx context.Context, actor, why string, req api.RollbackRequest) (api.SwitchResult, error) {
	if res, ok, err := c.rollbackCanaryLocked(ctx, actor, req); ok {
		return res, err
	}
	dec := decideRollback(c.view(), req)
	if !dec.Allowed {
		return api.SwitchResult{}, dec.refusal()
	}
	if dec.Deployment != "" {
		_, _, pools := c.snapshot()
		return c.rollbackDeployment(ctx, actor, dec.Deployment, why, dec.Restore, pools)
	}
	return c.plainSwitch(ctx, "rollback", dec, actor)
}

// changedMeanwhile refuses a switch whose decision the state outran
// between the decision and the commit (409 conflict): nothing changes.
func changedMeanwhile(action, what string) error {
	return refuse("conflict", "%s refused: the state changed while it was prepared (%s); nothing was switched: check status and retry", action, what)
}

func standby(st State) string {
	if st.Live == "blue" {
		return "green"
	}
	return "blue"
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// plainSwitch makes dec.Target live after checking it can serve.
func (c *Controller) plainSwitch(ctx context.Context, action string, dec Decision, actor string) (api.SwitchResult, error) {
	st, _, pools := c.snapshot()
	target := dec.Target
	if err := c.canServe(ctx, pools[target]); err != nil {
		return api.SwitchResult{}, refuse("pool_cannot_serve", "%s refused: %v; %s stays live", action, err, st.Live)
	}
	if err := c.checkPreflight(ctx, actor, action, dec.Deployment, pools[target]); err != nil {
		return api.SwitchResult{}, err
	}
	var res api.SwitchResult
	err := c.commit(ctx, actor, func(s *State) ([]event, error) {
		// The state may have moved on during the checks (another
		// gateway of a fleet switched): the decision held for the live
		// pool it saw.
		if s.Live != st.Live || s.Live == target {
			return nil, changedMeanwhile(action, fmt.Sprintf("%s is live now, not %s", s.Live, st.Live))
		}
		res = c.switchLive(s, action, target)
		res.Forced = dec.Forced
		e := event{Action: action, From: res.Previous, To: target, Deployment: dec.Deployment, Forced: dec.Forced,
			Reason: fmt.Sprintf("%s by %s: %s (model %s) is live", action, actor, target, c.specOf(*s, target).Model)}
		if dec.Forced {
			e.Reason = fmt.Sprintf("%s by %s: %s", action, actor, dec.Reason)
		}
		return []event{e}, nil
	})
	res.Revision = c.revision()
	return res, err
}

func (c *Controller) revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// switchLive makes target live in s and describes the switch.
func (c *Controller) switchLive(s *State, action, target string) api.SwitchResult {
	from := s.Live
	s.Live, s.Previous, s.SwitchedAt = target, from, c.now().UTC()
	s.RolledBack = action == "rollback"
	return api.SwitchResult{Action: action, Live: target, Previous: from, SwitchedAt: s.SwitchedAt}
}

// promoteRun is a promote of deployment id in progress, which an abort
// can stop before it switches.
type promoteRun struct {
	id     string
	cancel context.CancelCauseFunc
	// abortedBy is the actor of the abort that stopped it, "" for none.
	abortedBy atomic.Pointer[string]
}

// stopPromote stops the promote of deployment id in progress, if any,
// before it switches: its hooks and preflight end, and it is refused. An
// abort calls it before it waits for the promote to let go of tmu.
func (c *Controller) stopPromote(id, actor string) {
	if run := c.promoting.Load(); run != nil && run.id == id {
		run.abortedBy.Store(&actor)
		run.cancel(fmt.Errorf("%s aborted deployment %s", actor, id))
	}
}

// aborted is the refusal of a promote an abort stopped, nil if none did.
func (run *promoteRun) aborted(live string) error {
	if by := run.abortedBy.Load(); by != nil {
		return refuse("promote_aborted", "promotion of %s stopped: %s aborted the deployment while its before_promote hooks or preflight ran; %s stays live", run.id, *by, live)
	}
	return nil
}

func (c *Controller) promoteDeployment(ctx context.Context, actor, id string) (api.SwitchResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	run := &promoteRun{id: id, cancel: cancel}
	c.promoting.Store(run)
	defer func() {
		c.promoting.CompareAndSwap(run, nil)
		cancel(nil)
	}()
	st, _, pools := c.snapshot()
	d := st.find(id)
	p := pools[d.Pool]
	if err := c.canServe(ctx, p); err != nil {
		return api.SwitchResult{}, refuse("pool_cannot_serve", "promote refused: %v; %s stays live", err, st.Live)
	}
	for _, spec := range c.hookSpecs("before_promote") {
		// Recorded while it runs, like every command hook: a cutover
		// killed meanwhile ends it at the next start.
		pl := c.payload("before_promote", d, d.Pool, d.Model, d.Replicas, "")
		o := c.runTrackedLocked(ctx, d, spec, pl)
		c.countHook(o)
		rec := func(s *State) ([]event, error) {
			s.clearRunning(pl.RunID)
			s.find(id).addOutcome(o)
			return []event{{Action: "hook", Deployment: id, Hook: &o, Reason: o.Summary()}}, nil
		}
		// The outcome is recorded (and the running record cleared) even
		// when the caller went away meanwhile.
		if err := c.commit(context.WithoutCancel(ctx), actor, rec); err != nil {
			// Not recorded (the state moved on meanwhile): the hook
			// has ended all the same, so its running record goes.
			c.forgetRunningLocked(context.WithoutCancel(ctx), pl.RunID)
			return api.SwitchResult{}, err
		}
		if err := run.aborted(st.Live); err != nil {
			return api.SwitchResult{}, err
		}
		if !o.OK {
			msg := o.Summary()
			if o.Output != "" {
				msg += "\n" + o.Output
			}
			return api.SwitchResult{}, refuse("before_promote_failed", "promotion blocked: %s", msg)
		}
	}
	if err := c.checkPreflight(ctx, actor, "promote", id, p); err != nil {
		if aerr := run.aborted(st.Live); aerr != nil {
			return api.SwitchResult{}, aerr
		}
		return api.SwitchResult{}, err
	}
	var res api.SwitchResult
	// Not the promote's own context: an abort that comes now, too late
	// to stop the switch, must not leave it half written.
	err := c.commit(context.WithoutCancel(ctx), actor, func(s *State) ([]event, error) {
		if err := run.aborted(s.Live); err != nil {
			return nil, err
		}
		d := s.find(id)
		if d == nil || (d.Phase != PhaseReady && d.Phase != PhaseCanary) {
			return nil, refuse("deployment_not_ready", "deployment %s changed while promoting", id)
		}
		// What the old pool serves now (a reload may have changed it since
		// the deploy) is what the retention keeps, and what a restart
		// during the retention restores (pinRetainedLocked).
		from := c.specOf(*s, d.From)
		d.FromModel, d.FromReplicas = from.Model, slices.Clone(from.Replicas)
		res = c.switchLive(s, "promote", d.Pool)
		now := c.now().UTC()
		d.PromotedAt = now
		d.RetainUntil = now.Add(c.retention())
		if w := c.opts.Validation.PostPromotionWindow; w > 0 {
			d.PostPromotionUntil = now.Add(w)
		}
		reason := fmt.Sprintf("promoted by %s; %s retained until %s for rollback", actor, d.From, stamp(d.RetainUntil))
		if c.opts.Settings.RetentionMode == RetentionStop {
			reason = fmt.Sprintf("promoted by %s; retention_mode stop: %s is retired now (drained, on_retire hooks, its agent replicas stopped); no rollback", actor, d.From)
		}
		d.enter(PhasePromoted, now, reason, d.RetainUntil)
		c.pend(d, "on_promote")
		return []event{{Action: "promote", Deployment: id, From: res.Previous, To: d.Pool, Reason: d.Reason}}, nil
	})
	if err == nil {
		c.poke()
	}
	res.Revision = c.revision()
	return res, err
}

// rollbackDeployment makes the retained pool of deployment id live again.
// It first starts restore replicas through the agents (retention_mode
// shrink; see decideRetainedRollback) or wakes the sleeping pool
// (retention_mode sleep), and refuses when that fails. The caller holds
// tmu.
func (c *Controller) rollbackDeployment(ctx context.Context, actor, id, why string, restore int, pools map[string]*pool.Pool) (api.SwitchResult, error) {
	st, _, _ := c.snapshot()
	d := st.find(id)
	var prep api.SwitchResult
	if n, took, err := c.restoreRetained(ctx, d, restore); err != nil {
		c.setNote(d.ID, "")
		now, _, _ := c.snapshot() // the restore may have added replicas that do not serve yet
		return api.SwitchResult{}, &Refusal{Code: "restore_failed", Status: http.StatusBadGateway, Reason: fmt.Sprintf(
			"%s refused: bringing the retained pool %s back to full size failed: %v; %s stays live (`cutover rollback --now` switches at once onto the %d replica(s) %s has)",
			why, d.From, err, st.Live, len(c.specOf(now, d.From).Replicas), d.From)}
	} else if n > 0 {
		c.setNote(d.ID, "")
		why += fmt.Sprintf(" (after restoring %s to full size: %d replica(s) started through the agents and serving %s in %s)", d.From, n, d.FromModel, took.Round(time.Millisecond))
		prep.Restored, prep.RestoreMS = n, took.Milliseconds()
		_, _, pools = c.snapshot()
	}
	// From the wake on, a refused rollback leaves the pool retained:
	// asleep again at the next reconcile, as the status will say.
	refused := func(err error) (api.SwitchResult, error) {
		if !errors.Is(err, store.ErrUnavailable) { // etcd may yet commit the rollback: keep the pool awake
			c.sleep.unwake(d.ID)
		}
		return api.SwitchResult{}, err
	}
	if n, took, err := c.wakeRetained(ctx, d, pools); err != nil {
		return refused(refuse("pool_cannot_serve", "%s refused: the retained pool %s did not wake: %v; %s stays live", why, d.From, err, st.Live))
	} else if n > 0 {
		why += fmt.Sprintf(" (after waking %d replica(s) of %s in %s)", n, d.From, took.Round(time.Millisecond))
		prep.Woke, prep.WakeMS = n, took.Milliseconds()
	}
	if n := pools[d.From].HealthyCount(); n == 0 {
		return refused(refuse("pool_cannot_serve", "%s refused: the retained pool %s has no healthy replica; %s stays live", why, d.From, st.Live))
	}
	if err := c.checkPreflight(ctx, actor, "rollback", id, pools[d.From]); err != nil {
		return refused(err)
	}
	var res api.SwitchResult
	err := c.commit(ctx, actor, func(s *State) ([]event, error) {
		d := s.find(id)
		// The state may have moved on during the wake, the restore and
		// the preflight (another gateway of a fleet rolled back, or the
		// leader began the retirement and its on_retire hooks).
		switch {
		case d == nil:
			return nil, changedMeanwhile(why, fmt.Sprintf("deployment %s is gone", id))
		case d.Phase != PhasePromoted:
			return nil, changedMeanwhile(why, fmt.Sprintf("deployment %s is %s now", id, d.Phase))
		case s.Live == d.From:
			return nil, changedMeanwhile(why, fmt.Sprintf("%s is live already", d.From))
		}
		res = c.switchLive(s, "rollback", d.From)
		reason := fmt.Sprintf("%s by %s: %s is live again", why, actor, d.From)
		if n := missingReplicas(s, d); n > 0 && c.opts.Launcher != nil {
			// --now: the switch did not wait; the pool gets its replicas
			// back in the background (see restoreLater).
			d.RestoreLater = n
			reason += fmt.Sprintf(" on %d of its %d replicas at once (--now); the %d missing are started through the agents in the background", len(s.Pools[d.From].Replicas), len(d.FromReplicas), n)
		}
		d.enter(PhaseRolledBack, c.now().UTC(), reason, time.Time{})
		c.pend(d, "on_rollback")
		evs := []event{{Action: "rollback", Deployment: id, From: res.Previous, To: d.From, Reason: reason}}
		// A forced deploy waiting to take over the retained pool must not:
		// that pool is live again.
		if p := s.pending(); p != nil && p.Pool == d.From {
			r := fmt.Sprintf("aborted: %s is live again after the rollback of %s", d.From, id)
			p.enter(PhaseAborted, c.now().UTC(), r, time.Time{})
			evs = append(evs, event{Action: "abort", Deployment: p.ID, From: string(PhasePending), To: string(PhaseAborted), Reason: r})
		}
		return evs, nil
	})
	if err != nil {
		return refused(err)
	}
	c.poke()
	res.Revision = c.revision()
	res.Restored, res.RestoreMS, res.Woke, res.WakeMS = prep.Restored, prep.RestoreMS, prep.Woke, prep.WakeMS
	return res, nil
}

// canServe checks that at least one replica of p is healthy and answers a
// fresh check listing p's model.
func (c *Controller) canServe(ctx context.Context, p *pool.Pool) error {
	if p == nil {
		return fmt.Errorf("pool has no replicas")
	}
	if len(p.Replicas) == 0 {
		return fmt.Errorf("pool %s has no replicas", p.Name)
	}
	var reasons []string
	var healthy []*pool.Replica
	for _, r := range p.Replicas {
		if r.Healthy() {
			healthy = append(healthy, r)
		} else {
			reasons = append(reasons, fmt.Sprintf("%s: unhealthy (%s)", r.Name, r.Health().LastError))
		}
	}
	if len(healthy) == 0 {
		return fmt.Errorf("pool %s has no healthy replica (%s)", p.Name, strings.Join(reasons, "; "))
	}
	errs := c.probeAll(ctx, healthy, p.Model)
	ok := 0
	for i, err := range errs {
		if err == nil {
			ok++
		} else {
			reasons = append(reasons, fmt.Sprintf("%s: %v", healthy[i].Name, err))
		}
	}
	if ok == 0 {
		return fmt.Errorf("pool %s cannot serve model %q (%s)", p.Name, p.Model, strings.Join(reasons, "; "))
	}
	return nil
}

// probeAll checks rs concurrently, bounded by the probe timeout.
func (c *Controller) probeAll(ctx context.Context, rs []*pool.Replica, model string) []error {
	return eachReplica(ctx, c.opts.ProbeTimeout, rs, func(ctx context.Context, r *pool.Replica) error {
		return c.opts.Prober.Probe(ctx, r, model)
	})
}

// eachReplica runs check on every replica of rs at once, all bounded by
// timeout, and returns their errors in the order of rs.
func eachReplica(ctx context.Context, timeout time.Duration, rs []*pool.Replica, check func(context.Context, *pool.Replica) error) []error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return pool.CheckEach(ctx, rs, check)
}
