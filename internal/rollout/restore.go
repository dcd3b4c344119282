package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Restores: the replicas that bring a shrunk retained pool back to full
// size (retention_mode shrink) are started through the agents like a
// deploy's (see launch.go), and persisted the same way: a RestoreState is
// committed with its key before any agent is asked, and its slots at
// every step, until the commit that adds the replicas to the pool also
// drops it. A controller killed in between finds it in the state: it asks
// each slot's agent again with the same key (the agent answers the
// replica it already started, so none is started twice), then adopts the
// replicas into the pool, or stops them when the pool no longer wants
// them. A restore dropped without its replicas hands those it knows to
// the orphans (orphans.go), which are stopped; none is left running
// unknown, holding GPUs.

// RestoreState is a restore in progress (State.Restores).
type RestoreState struct {
	// Key prefixes the slots' keys (restore-<deployment>-<nanos>), fixed
	// when the restore is recorded.
	Key        string `json:"key"`
	Deployment string `json:"deployment"`
	// Pool is the deployment's old pool, which the replicas join.
	Pool  string `json:"pool"`
	Model string `json:"model"`
	// N is how many replicas it starts.
	N int `json:"n"`
	// Later is true for the background restore after a rollback with now
	// (the replicas join the live pool), false for the restore a
	// rollback waits for (they join the retained pool).
	Later bool         `json:"later,omitempty"`
	Since time.Time    `json:"since"`
	Slots []LaunchSlot `json:"slots,omitempty"`
}

// restoreOf returns the restore in progress of deployment id of kind
// later, or nil.
func (s *State) restoreOf(id string, later bool) *RestoreState {
	for i := range s.Restores {
		if r := &s.Restores[i]; r.Deployment == id && r.Later == later {
			return r
		}
	}
	return nil
}

// dropRestore removes the restore with key from s; false when s has none.
func dropRestore(s *State, key string) bool {
	n := len(s.Restores)
	s.Restores = slices.DeleteFunc(slices.Clone(s.Restores), func(r RestoreState) bool { return r.Key == key })
	if len(s.Restores) == 0 {
		s.Restores = nil
	}
	return len(s.Restores) < n
}

// commitWith commits fn, taking tmu unless the caller holds it (locked).
func (c *Controller) commitWith(ctx context.Context, locked bool, fn func(*State) ([]event, error)) error {
	if !locked {
		c.tmu.Lock()
		defer c.tmu.Unlock()
	}
	return c.commit(ctx, "controller", fn)
}

// commitStep is commitWith for a bookkeeping step of a launch or restore:
// errStale (the record is gone) is no error, any other is logged as what
// with attrs.
func (c *Controller) commitStep(ctx context.Context, locked bool, what string, fn func(*State) ([]event, error), attrs ...any) {
	if err := c.commitWith(ctx, locked, fn); err != nil && !errors.Is(err, errStale) {
		c.log.Warn(what, append(attrs, "error", err)...)
	}
}

// recordRestore commits rs as a restore in progress, before any agent is
// asked. locked: the caller holds tmu.
func (c *Controller) recordRestore(ctx context.Context, rs RestoreState, locked bool) error {
	return c.commitWith(ctx, locked, func(s *State) ([]event, error) {
		if s.find(rs.Deployment) == nil {
			return nil, fmt.Errorf("deployment %s is gone", rs.Deployment)
		}
		s.Restores = append(slices.Clone(s.Restores), rs)
		return nil, nil
	})
}

// runRestore has the launcher start the replicas of rs (or find them
// again with their keys, when rs carries slots), persisting each step,
// and calls progress with the slots too.
func (c *Controller) runRestore(ctx context.Context, rs RestoreState, locked bool, progress func([]LaunchSlot)) ([]LaunchedReplica, error) {
	n := rs.N
	if len(rs.Slots) > 0 {
		n = 0
	}
	return c.opts.Launcher.Launch(ctx, rs.Key, rs.Model, n, slices.Clone(rs.Slots), func(slots []LaunchSlot) {
		if progress != nil {
			progress(slots)
		}
		c.saveRestoreSlots(ctx, rs.Key, slots, locked)
	})
}

// saveRestoreSlots persists the slots of restore key (a commit without a
// history event). locked: the caller holds tmu (a rollback, blocked in
// the launcher that calls this, one call at a time).
func (c *Controller) saveRestoreSlots(ctx context.Context, key string, slots []LaunchSlot, locked bool) {
	c.commitStep(context.WithoutCancel(ctx), locked, "record the restore's progress", func(s *State) ([]event, error) {
		i := slices.IndexFunc(s.Restores, func(r RestoreState) bool { return r.Key == key })
		if i < 0 {
			return nil, errStale
		}
		s.Restores = slices.Clone(s.Restores)
		s.Restores[i].Slots = slices.Clone(slots)
		return nil, nil
	}, "restore", key)
}

// endRestore drops restore key from the state: the replicas it knows and
// that were not released (stopLaunched) become orphans, stopped by
// Reconcile.
func (c *Controller) endRestore(ctx context.Context, key string, locked bool) {
	c.commitStep(context.WithoutCancel(ctx), locked, "clear the restore", func(s *State) ([]event, error) {
		if !dropRestore(s, key) {
			return nil, errStale
		}
		return nil, nil
	}, "restore", key)
}

// restoring marks restore key as run by this process; false when it is
// already.
func (c *Controller) restoring(key string) bool {
	t := &c.shrinks
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.running = map[string]bool{}
	}
	if t.running[key] {
		return false
	}
	t.running[key] = true
	return true
}

// restored unmarks restore key (see restoring).
func (c *Controller) restored(key string) {
	t := &c.shrinks
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.running, key)
}

// resumeRestores carries on the restores a previous controller left in
// the state (restart, or a fleet's new leader). A rollback's (its caller
// is gone) is asked again with its keys and its replicas join the
// retained pool when the deployment still retains it, so a rollback now
// switches without starting any; else they are stopped. A background
// restore whose deployment no longer waits for one is dropped (its
// replicas stopped as orphans); the others are carried on by
// restoreLater. Run calls it.
func (c *Controller) resumeRestores(ctx context.Context) {
	if c.opts.Launcher == nil {
		return
	}
	st, _, _ := c.snapshot()
	for _, rs := range st.Restores {
		if rs.Later {
			if d := st.find(rs.Deployment); d == nil || d.RestoreLater == 0 {
				c.endRestore(ctx, rs.Key, false)
			}
			continue
		}
		if !c.restoring(rs.Key) {
			continue // this process runs it
		}
		c.resumeRollbackRestore(ctx, rs)
		c.restored(rs.Key)
	}
}

// resumeRollbackRestore carries on restore rs of a rollback that a
// previous controller did not finish (see resumeRestores).
func (c *Controller) resumeRollbackRestore(ctx context.Context, rs RestoreState) {
	c.log.Info("carrying on the restore left by the previous controller", "restore", rs.Key, "deployment", rs.Deployment, "pool", rs.Pool, "slots", len(rs.Slots))
	l, err := c.runRestore(ctx, rs, false, nil)
	if ctx.Err() != nil {
		return // shutting down: carried on after the next restart
	}
	if err != nil {
		c.log.Warn("restore carried on after a restart failed", "restore", rs.Key, "error", err)
		c.endRestore(ctx, rs.Key, false)
		return
	}
	err = c.commitWith(ctx, false, func(s *State) ([]event, error) {
		d := s.find(rs.Deployment)
		if d == nil || d.Phase != PhasePromoted || d.From != rs.Pool || s.Live == rs.Pool || !dropRestore(s, rs.Key) {
			return nil, errStale // not wanted: stopped below
		}
		spec := c.addLaunched(s, d.From, l)
		d.FromLaunched = append(slices.Clone(d.FromLaunched), l...)
		d.FromReplicas = slices.Clone(spec.Replicas)
		return []event{{Action: "restore", Deployment: d.ID, To: d.From, Reason: fmt.Sprintf(
			"the rollback that started %s through the agents did not finish (the controller restarted); retained pool %s keeps them, back to %d replica(s): a rollback now switches without starting any",
			strings.Join(launchedURLs(l), ", "), d.From, len(spec.Replicas))}}, nil
	})
	if err == nil {
		return
	}
	// Stopped and released first, so that dropping the restore leaves
	// only those a stop failed for to the orphans.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if serr := c.stopLaunched(sctx, l); serr != nil {
		c.log.Warn("stopping the replicas of a restore no pool wants", "restore", rs.Key, "err", serr)
	}
	if err != nil && !errors.Is(err, errStale) {
		c.log.Warn("record the restore carried on after a restart", "restore", rs.Key, "error", err)
	}
	c.endRestore(ctx, rs.Key, false)
}
