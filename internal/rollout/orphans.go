package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Orphans: a replica the controller started through an agent stays in
// the state until it is stopped. A commit that drops one from every pool
// spec, from the launch in progress and from the restores in progress (a
// new deployment replacing the standby's, a retirement, a launch that
// failed, a restore that could not be kept) moves it to State.Orphans
// unless it is there already; Reconcile stops the orphans through their
// agents, retrying with backoff while an agent does not answer, and
// forgets each once it is stopped (or its agent no longer knows it).
// Stopping is idempotent at the agent, so a replica stopped before its
// spec changed is only asked again.

// launchedKey identifies a launched replica.
func launchedKey(r LaunchedReplica) string { return r.Agent + "/" + r.ID }

// held lists every launched replica the pool specs, the launch in
// progress, the restores in progress and a pending deployment (a forced
// deploy's replicas, waiting for the retained pool to retire before they
// join it) of s hold, by key.
func (c *Controller) held(s *State) map[string]LaunchedReplica {
	out := map[string]LaunchedReplica{}
	for name := range c.opts.Pools {
		for _, r := range c.specOf(*s, name).Launched {
			out[launchedKey(r)] = r
		}
	}
	if d := s.pending(); d != nil {
		for _, r := range d.Launched {
			out[launchedKey(r)] = r
		}
	}
	var slots []LaunchSlot
	if l := s.Launch; l != nil {
		slots = l.Slots
	}
	for _, rs := range s.Restores {
		slots = append(slices.Clone(slots), rs.Slots...)
	}
	for _, sl := range slots {
		if sl.ID != "" {
			r := LaunchedReplica{Agent: sl.Agent, ID: sl.ID, URL: sl.URL, GPUs: sl.GPUs}
			out[launchedKey(r)] = r
		}
	}
	return out
}

// keepOrphans adds to next.Orphans the launched replicas cur held and
// next no longer does, but those a stop just released (stopLaunched).
func (c *Controller) keepOrphans(cur, next *State) {
	now := c.held(next)
	for _, r := range next.Orphans {
		now[launchedKey(r)] = r
	}
	before := c.held(cur)
	var dropped []LaunchedReplica
	c.mu.Lock()
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, ok := now[k]; ok {
			continue
		}
		if c.released[k] {
			delete(c.released, k) // stopped: nothing left to do
			continue
		}
		dropped = append(dropped, before[k])
	}
	c.mu.Unlock()
	if len(dropped) > 0 {
		next.Orphans = append(slices.Clone(next.Orphans), dropped...)
	}
}

// release notes that rs were stopped, so that the commit dropping them
// does not keep them as orphans.
func (c *Controller) release(rs []LaunchedReplica) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released == nil {
		c.released = map[string]bool{}
	}
	for _, r := range rs {
		c.released[launchedKey(r)] = true
	}
}

// forgetOrphans removes rs, stopped after the commit that dropped them,
// from the orphans (a commit without a history event).
func (c *Controller) forgetOrphans(ctx context.Context, rs []LaunchedReplica) {
	gone := map[string]bool{}
	for _, r := range rs {
		gone[launchedKey(r)] = true
	}
	c.mu.Lock()
	for k := range gone {
		delete(c.released, k)
	}
	c.mu.Unlock()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
		s.Orphans = slices.DeleteFunc(slices.Clone(s.Orphans), func(r LaunchedReplica) bool { return gone[launchedKey(r)] })
		return nil, nil
	})
	if err != nil {
		c.log.Warn("forget stopped replicas", "error", err)
	}
}

// stopOrphans stops the orphans through their agents, at most once per
// backoff step while stops fail, and forgets those stopped.
func (c *Controller) stopOrphans(ctx context.Context) {
	st, _, _ := c.snapshot()
	if len(st.Orphans) == 0 || c.opts.Launcher == nil {
		return
	}
	c.mu.Lock()
	next := c.orphanRetry
	c.mu.Unlock()
	if c.now().Before(next.at) {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stopped := map[string]bool{}
	var errs []error
	for _, r := range st.Orphans {
		if err := c.opts.Launcher.Stop(sctx, []LaunchedReplica{r}); err != nil {
			errs = append(errs, err)
			continue
		}
		stopped[launchedKey(r)] = true
	}
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	if len(errs) > 0 {
		tries := c.orphanRetry.tries + 1
		c.orphanRetry = retry{at: c.now().Add(retireBackoff(tries)), tries: tries}
	} else {
		c.orphanRetry = retry{}
	}
	c.mu.Unlock()
	if len(errs) > 0 {
		c.log.Warn("stopping replicas no pool holds any more; retrying", "failed", len(errs), "error", errors.Join(errs...))
	}
	if len(stopped) == 0 {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
		var left []LaunchedReplica
		for _, r := range s.Orphans {
			if !stopped[launchedKey(r)] {
				left = append(left, r)
			}
		}
		n := len(s.Orphans) - len(left)
		s.Orphans = left
		return []event{{Action: "replicas_stopped", Reason: fmt.Sprintf("%d replica(s) no pool holds any more stopped through their agents", n)}}, nil
	})
	if err != nil {
		c.log.Warn("record the stopped replicas", "error", err)
	}
}
