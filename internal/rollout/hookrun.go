package rollout

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cutover-dev/cutover/internal/hook"
)

// RunningHook is a command hook that is running, as recorded in the
// state: a cutover killed while it ran finds it at the next start and
// ends its process group before the hook runs again, so that a hook never
// runs twice at once.
type RunningHook struct {
	// RunID is the run's hook.Payload.RunID (CUTOVER_HOOK_RUN_ID).
	RunID      string    `json:"run_id"`
	Deployment string    `json:"deployment"`
	Event      string    `json:"event"`
	Hook       string    `json:"hook"`
	PGID       int       `json:"pgid"`
	Started    time.Time `json:"started"`
	// Gateway is the fleet member that runs it ("" alone).
	Gateway string `json:"gateway,omitempty"`
}

// leftoverGrace is how long a leftover hook's process group has to stop
// after SIGTERM before it gets SIGKILL.
var leftoverGrace = 10 * time.Second

// runTracked runs one hook of d, recording its process group in the state
// while it runs. The caller's commit of the outcome clears the record
// (clearRunning), and forgetRunning does if that commit did not happen.
func (c *Controller) runTracked(ctx context.Context, d *Deployment, spec hook.Spec, p hook.Payload) hook.Outcome {
	return c.runRecorded(ctx, d, spec, p, false)
}

// runTrackedLocked is runTracked for a caller that holds tmu (promote,
// which runs the before_promote hooks itself). The caller's commit of the
// outcome clears the record.
func (c *Controller) runTrackedLocked(ctx context.Context, d *Deployment, spec hook.Spec, p hook.Payload) hook.Outcome {
	return c.runRecorded(ctx, d, spec, p, true)
}

// runRecorded runs the hook, recording its process group in the state
// while it runs; locked says whether the caller holds tmu.
func (c *Controller) runRecorded(ctx context.Context, d *Deployment, spec hook.Spec, p hook.Payload, locked bool) hook.Outcome {
	tr := &hook.Trace{Started: func(pgid int) {
		if pgid <= 1 {
			return
		}
		if !locked {
			c.tmu.Lock()
			defer c.tmu.Unlock()
		}
		err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
			s.RunningHooks = append(s.RunningHooks, RunningHook{RunID: p.RunID, Deployment: d.ID, Event: p.Event,
				Hook: spec.Name(), PGID: pgid, Started: c.now().UTC(), Gateway: c.opts.Gateway})
			return nil, nil
		})
		if err != nil && ctx.Err() == nil {
			c.log.Warn("record running hook", "deployment", d.ID, "event", p.Event, "run_id", p.RunID, "pgid", pgid, "error", err)
		}
	}}
	return c.hooks.Run(hook.WithTrace(ctx, tr), spec, p)
}

// clearRunning drops the records of the hook runs ids.
func (s *State) clearRunning(ids ...string) {
	s.RunningHooks = slices.DeleteFunc(s.RunningHooks, func(h RunningHook) bool { return slices.Contains(ids, h.RunID) })
	if len(s.RunningHooks) == 0 {
		s.RunningHooks = nil
	}
}

// forgetRunning clears the records of runs ids if they are still there
// (the outcome's commit found its deployment moved on). The caller does
// not hold tmu.
func (c *Controller) forgetRunning(ctx context.Context, ids ...string) {
	st, _, _ := c.snapshot()
	if !slices.ContainsFunc(st.RunningHooks, func(h RunningHook) bool { return slices.Contains(ids, h.RunID) }) {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.forgetRunningLocked(ctx, ids...)
}

// forgetRunningLocked is forgetRunning for a caller that holds tmu.
func (c *Controller) forgetRunningLocked(ctx context.Context, ids ...string) {
	st, _, _ := c.snapshot()
	if !slices.ContainsFunc(st.RunningHooks, func(h RunningHook) bool { return slices.Contains(ids, h.RunID) }) {
		return
	}
	err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
		s.clearRunning(ids...)
		return nil, nil
	})
	if err != nil && ctx.Err() == nil {
		c.log.Warn("clear running hook records", "run_ids", ids, "error", err)
	}
}

// endLeftoverHooks ends the process groups of hooks that were running when
// the previous process died, before anything can run them again, and
// clears their records. The caller holds tmu.
func (c *Controller) endLeftoverHooks(ctx context.Context) error {
	st, _, _ := c.snapshot()
	mine := func(h RunningHook) bool { return h.Gateway == c.opts.Gateway }
	if !slices.ContainsFunc(st.RunningHooks, mine) {
		return nil
	}
	var evs []event
	for _, h := range st.RunningHooks {
		if !mine(h) {
			continue
		}
		found, err := hook.EndLeftover(ctx, h.PGID, h.RunID, leftoverGrace)
		what := fmt.Sprintf("%s hook %q (run %s, process group %d, started %s)", h.Event, h.Hook, h.RunID, h.PGID, stamp(h.Started))
		switch {
		case err != nil:
			c.log.Error("a hook left running before the restart could not be ended; it may overlap its re-run", "deployment", h.Deployment, "event", h.Event, "run_id", h.RunID, "pgid", h.PGID, "error", err)
			evs = append(evs, event{Action: "hook_leftover", Deployment: h.Deployment, Reason: fmt.Sprintf("%s was still recorded as running from before the restart and could not be ended: %v", what, err)})
		case found:
			c.log.Warn("ended a hook left running before the restart, before it runs again", "deployment", h.Deployment, "event", h.Event, "run_id", h.RunID, "pgid", h.PGID)
			then := " before it runs again"
			if h.Event == "before_promote" {
				// It ran inside a promote request, which died with the
				// process: nothing runs it again but the next promote.
				then = "; the promotion it was checking did not happen: promote again to run it again"
			}
			evs = append(evs, event{Action: "hook_leftover", Deployment: h.Deployment, Reason: what + " was still running from before the restart: ended (SIGTERM, then SIGKILL after " + leftoverGrace.String() + ")" + then})
		}
	}
	return c.commit(ctx, "controller", func(s *State) ([]event, error) {
		s.RunningHooks = slices.DeleteFunc(s.RunningHooks, mine)
		if len(s.RunningHooks) == 0 {
			s.RunningHooks = nil
		}
		return evs, nil
	})
}

// pendingRunID is the run id of d's pending event i: the one recorded
// when the event was pended, so that a re-run after a restart has the
// same. A state written before run ids existed gets a stable stand-in.
func (d *Deployment) pendingRunID(i int) string {
	if len(d.PendingRunIDs) == len(d.PendingHooks) {
		return d.PendingRunIDs[i]
	}
	return fmt.Sprintf("%s.%s.p%d", d.ID, d.PendingHooks[i], i)
}

// retireRunID is the run id of d's on_retire hooks: one retirement, so
// every attempt of it has the same.
func retireRunID(d *Deployment) string { return d.ID + ".on_retire" }
