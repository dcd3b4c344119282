package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// RetentionShrink keeps only Settings.ShrinkTo replicas of the old pool
// during its retention: once the promotion's post-promotion checks are
// over and the replicas to stop have drained, the others that an agent
// started are stopped through it (their GPUs freed). A rollback first
// brings the pool back to full size (launches the missing replicas
// through the agents and waits until they serve the pool's model), unless
// asked with now: then it switches at once onto what is left.
const RetentionShrink = "shrink"

// shrinkPlan is what shrinking a retained pool does.
type shrinkPlan struct {
	// stop are the replicas to stop through their agents.
	stop []LaunchedReplica
	// keep are the replica URLs that stay, in the pool's order.
	keep []string
	// unmanaged are kept replicas no agent started: cutover cannot stop
	// them (given with --replica, or from the configuration).
	unmanaged []string
}

// planShrink picks which replicas of spec stay so that keep remain:
// replicas no agent started first (they cannot be stopped), then the
// launched ones healthy reports healthy, then the others, each in the
// pool's order. canStop false (no agents configured) stops nothing.
func planShrink(spec PoolSpec, keep int, canStop bool, healthy func(url string) bool) shrinkPlan {
	launched := map[string]LaunchedReplica{}
	if canStop {
		for _, l := range spec.Launched {
			launched[l.URL] = l
		}
	}
	var p shrinkPlan
	var candidates []string
	for _, u := range spec.Replicas {
		if _, ok := launched[u]; ok {
			candidates = append(candidates, u)
		} else {
			p.unmanaged = append(p.unmanaged, u)
		}
	}
	// Healthy ones first; the sort is stable, so the pool's order holds
	// within each group.
	slices.SortStableFunc(candidates, func(a, b string) int {
		ha, hb := healthy(a), healthy(b)
		switch {
		case ha == hb:
			return 0
		case ha:
			return -1
		}
		return 1
	})
	slots := max(keep-len(p.unmanaged), 0)
	stay := map[string]bool{}
	for i, u := range candidates {
		if i < slots {
			stay[u] = true
		} else {
			p.stop = append(p.stop, launched[u])
		}
	}
	for _, u := range spec.Replicas {
		if _, ok := launched[u]; !ok || stay[u] {
			p.keep = append(p.keep, u)
		}
	}
	return p
}

// shrinkTracker backs off a shrink whose stops failed, per deployment
// (not persisted: after a restart it is tried again at once).
type shrinkTracker struct {
	mu    sync.Mutex
	retry map[string]retry
	last  map[string]string // deployment id -> the last failure

	bg      sync.WaitGroup  // background restores (restoreLater)
	running map[string]bool // deployment id -> its background restore runs; guarded by mu
}

func (t *shrinkTracker) failed(id string, now time.Time, why string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.retry == nil {
		t.retry, t.last = map[string]retry{}, map[string]string{}
	}
	r := t.retry[id]
	r.tries++
	wait := retireBackoff(r.tries)
	r.at = now.Add(wait)
	t.retry[id], t.last[id] = r, why
	return wait
}

// wait returns when the next try of deployment id is due and the last
// failure; zero without one.
func (t *shrinkTracker) wait(id string) (time.Time, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.retry[id].at, t.last[id]
}

// keptWhenShrunk is Settings.ShrinkTo, at least 1.
func (c *Controller) keptWhenShrunk() int { return max(c.opts.Settings.ShrinkTo, 1) }

// keepRetainedShrunk shrinks the old pool of a promoted deployment once,
// when rollout.retention_mode is shrink: after the post-promotion checks
// (whose automatic rollback wants the full pool at once), and once the
// replicas to stop have no request in flight (bounded by the drain
// timeout from the promotion). It stops them through their agents under
// the transition lock, so a rollback never sees a pool half shrunk, then
// records the smaller pool. It notes the retained pool's size in the
// status.
func (c *Controller) keepRetainedShrunk(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) {
	if c.opts.Settings.RetentionMode != RetentionShrink {
		return
	}
	now := c.now()
	if !d.ShrunkAt.IsZero() {
		st, _, _ := c.snapshot()
		c.setNote(d.ID, c.shrunkNote(d, c.specOf(st, d.From)))
		return
	}
	if inPostPromotion(d, now) {
		return // the post-promotion checks note the status
	}
	if at, why := c.shrinks.wait(d.ID); now.Before(at) {
		c.setNote(d.ID, fmt.Sprintf("shrinking retained pool %s to %d replica(s) failed (%s); next try at %s", d.From, c.keptWhenShrunk(), why, stamp(at)))
		return
	}
	st, _, _ := c.snapshot()
	plan := planShrink(c.specOf(st, d.From), c.keptWhenShrunk(), c.opts.Launcher != nil, healthyIn(pools[d.From]))
	drained := d.PromotedAt
	if d.PostPromotionUntil.After(drained) {
		drained = d.PostPromotionUntil
	}
	drained = drained.Add(c.opts.Settings.DrainTimeout)
	if n := inFlightOn(pools[d.From], plan.stop); n > 0 && now.Before(drained) {
		c.setNote(d.ID, fmt.Sprintf("retained pool %s is shrunk to %d replica(s) once the %d request(s) in flight on the replicas to stop are done (at the latest %s)",
			d.From, c.keptWhenShrunk(), n, stamp(drained)))
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	st, _, _ = c.snapshot()
	if cur := st.find(d.ID); cur == nil || cur.Phase != PhasePromoted || !cur.ShrunkAt.IsZero() {
		return // rolled back, retired or shrunk meanwhile
	}
	full := len(c.specOf(st, d.From).Replicas)
	plan = planShrink(c.specOf(st, d.From), c.keptWhenShrunk(), c.opts.Launcher != nil, healthyIn(c.Pool(d.From)))
	// One stop each, at once: each answers for itself, and the wait is
	// one grace, not one per replica.
	results := make([]error, len(plan.stop))
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	var wg sync.WaitGroup
	for i, r := range plan.stop {
		// stopLaunched releases each stopped one, so that the commit
		// dropping it from the pool does not keep it as an orphan.
		wg.Go(func() { results[i] = c.stopLaunched(sctx, []LaunchedReplica{r}) })
	}
	wg.Wait()
	cancel()
	if ctx.Err() != nil {
		return // shutting down: stopped again (a no-op for those gone) after restart
	}
	var stopped []LaunchedReplica
	var errs []error
	for i, r := range plan.stop {
		if err := results[i]; err != nil {
			errs = append(errs, fmt.Errorf("%s (agent %s, replica %s): %w", r.URL, r.Agent, r.ID, err))
			continue
		}
		stopped = append(stopped, r)
	}
	if len(errs) > 0 {
		why := errors.Join(errs...).Error()
		wait := c.shrinks.failed(d.ID, now, why)
		c.setNote(d.ID, fmt.Sprintf("shrinking retained pool %s to %d replica(s) failed (%s); next try at %s", d.From, c.keptWhenShrunk(), why, stamp(now.Add(wait))))
		c.log.Warn("retention: stopping replicas of the retained pool failed", "deployment", d.ID, "pool", d.From, "err", why, "retry_in", wait)
		if len(stopped) == 0 {
			return
		}
	}
	err := c.commit(ctx, "controller", func(s *State) ([]event, error) {
		d := s.find(d.ID)
		if d == nil || d.Phase != PhasePromoted {
			return nil, errStale
		}
		gone := map[string]bool{}
		for _, r := range stopped {
			gone[r.URL] = true
		}
		spec := c.specOf(*s, d.From)
		spec.Replicas = slices.DeleteFunc(slices.Clone(spec.Replicas), func(u string) bool { return gone[u] })
		spec.Launched = slices.DeleteFunc(slices.Clone(spec.Launched), func(l LaunchedReplica) bool { return gone[l.URL] })
		if s.Pools == nil {
			s.Pools = map[string]PoolSpec{}
		}
		s.Pools[d.From] = spec
		d.FromLaunched = slices.DeleteFunc(slices.Clone(d.FromLaunched), func(l LaunchedReplica) bool { return gone[l.URL] })
		d.Shrunk = append(slices.Clone(d.Shrunk), stopped...)
		reason := fmt.Sprintf("retention_mode shrink: %s shrunk to %d of %d replica(s)", d.From, len(spec.Replicas), full)
		if len(stopped) > 0 {
			reason += fmt.Sprintf(": stopped %s through the agents (GPUs freed)", strings.Join(launchedURLs(stopped), ", "))
		} else {
			reason += ": nothing to stop"
		}
		if len(plan.unmanaged) > 0 {
			reason += fmt.Sprintf("; kept %s (not started by an agent)", strings.Join(plan.unmanaged, ", "))
		}
		if len(errs) > 0 {
			reason += fmt.Sprintf("; could not stop: %v (tried again)", errors.Join(errs...))
		} else {
			d.ShrunkAt = c.now().UTC()
		}
		return []event{{Action: "shrink", Deployment: d.ID, From: d.From, Reason: reason}}, nil
	})
	if err != nil && !errors.Is(err, errStale) {
		c.log.Warn("retention: recording the shrunk pool", "deployment", d.ID, "err", err)
		return
	}
	if err == nil {
		c.log.Info("retention: old pool shrunk", "deployment", d.ID, "pool", d.From, "stopped", len(stopped), "kept", len(plan.keep))
		if len(errs) == 0 {
			st, _, _ := c.snapshot()
			if cur := st.find(d.ID); cur != nil {
				c.setNote(d.ID, c.shrunkNote(cur, c.specOf(st, d.From)))
			}
		}
	}
}

// shrunkNote describes the shrunk retained pool of d (now spec) for the
// status.
func (c *Controller) shrunkNote(d *Deployment, spec PoolSpec) string {
	full, left := len(d.FromReplicas), len(spec.Replicas)
	note := fmt.Sprintf("retained pool %s shrunk to %d of %d replica(s) until %s (%d stopped through the agents, GPUs freed)", d.From, left, full, stamp(d.RetainUntil), len(d.Shrunk))
	if missing := full - left; missing > 0 {
		note += fmt.Sprintf("; a rollback first starts %d again and waits until they serve %s (`rollback --now` switches at once onto %d)", missing, d.FromModel, left)
	}
	plan := planShrink(spec, c.keptWhenShrunk(), c.opts.Launcher != nil, func(string) bool { return true })
	if len(plan.unmanaged) > 0 {
		note += fmt.Sprintf("; kept (not started by an agent): %s", strings.Join(plan.unmanaged, ", "))
	}
	return note
}

// healthyIn reports, for a replica URL of p, whether it is healthy.
func healthyIn(p *pool.Pool) func(string) bool {
	return func(u string) bool {
		if p == nil {
			return false
		}
		for _, r := range p.Replicas {
			if r.Name == u {
				return r.Healthy()
			}
		}
		return false
	}
}

// inFlightOn counts the requests in flight on the replicas of p in rs.
func inFlightOn(p *pool.Pool, rs []LaunchedReplica) int64 {
	if p == nil {
		return 0
	}
	var n int64
	for _, r := range p.Replicas {
		for _, l := range rs {
			if l.URL == r.Name {
				n += r.InFlight()
			}
		}
	}
	return n
}

// missingReplicas is how many replicas the retained pool of d lacks
// against its size at the promotion: what retention_mode shrink stopped
// and a rollback starts again first. st is the state d is in.
func missingReplicas(st *State, d *Deployment) int {
	if len(d.Shrunk) == 0 {
		return 0
	}
	spec, ok := st.Pools[d.From]
	if !ok {
		return 0
	}
	return max(len(d.FromReplicas)-len(spec.Replicas), 0)
}

// restoreRetained brings the shrunk retained pool of d back to full size
// before a rollback: it launches the missing replicas through the agents,
// records them in the pool (so retirement stops them too), and waits
// until each is healthy and serves the pool's model. The caller holds
// tmu. It returns how many it started and how long that took (wall time,
// whatever the controller's clock).
func (c *Controller) restoreRetained(ctx context.Context, d *Deployment, n int) (int, time.Duration, error) {
	if n <= 0 {
		return 0, 0, nil
	}
	if c.opts.Launcher == nil {
		return 0, 0, fmt.Errorf("no agents are configured to start the %d missing replica(s)", n)
	}
	start := time.Now()
	// The restore is the rollback's: a caller that gives up does not
	// leave replicas half launched.
	ctx = context.WithoutCancel(ctx)
	c.setNote(d.ID, fmt.Sprintf("rollback: bringing %s back to full size: starting %d replica(s) of %s through the agents", d.From, n, d.FromModel))
	// Persisted before any agent is asked (see restore.go): a controller
	// killed meanwhile finds the replicas again.
	rs := RestoreState{Key: restoreKey(d.ID), Deployment: d.ID, Pool: d.From, Model: d.FromModel, N: n, Since: c.now().UTC()}
	c.restoring(rs.Key)
	defer c.restored(rs.Key)
	if err := c.recordRestore(ctx, rs, true); err != nil {
		return 0, 0, fmt.Errorf("recording the restore of %s: %w", d.From, err)
	}
	tracked := c.launch.begin(d.FromModel, c.now())
	l, err := c.runRestore(ctx, rs, true, func(slots []LaunchSlot) {
		if tracked {
			c.launch.slots(slots)
		}
	})
	if tracked {
		c.launch.end()
	}
	if err != nil {
		c.endRestore(ctx, rs.Key, true) // the launcher stopped those it started
		return 0, 0, fmt.Errorf("starting %d replica(s) of %s through the agents: %w", n, d.FromModel, err)
	}
	took := time.Since(start)
	err = c.commit(ctx, "controller", func(s *State) ([]event, error) {
		cur := s.find(d.ID)
		if cur == nil {
			return nil, fmt.Errorf("deployment %s is gone", d.ID)
		}
		dropRestore(s, rs.Key)
		spec := c.addLaunched(s, cur.From, l)
		cur.FromLaunched = append(slices.Clone(cur.FromLaunched), l...)
		cur.FromReplicas = slices.Clone(spec.Replicas)
		return []event{{Action: "restore", Deployment: cur.ID, To: cur.From, Reason: fmt.Sprintf(
			"rollback: %s brought back to %d replica(s): started %s through the agents in %s", cur.From, len(spec.Replicas), strings.Join(launchedURLs(l), ", "), took.Round(time.Millisecond))}}, nil
	})
	if err != nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if serr := c.stopLaunched(sctx, l); serr != nil {
			c.log.Error("stopping the replicas started for a rollback that could not record them", "err", serr)
		}
		c.endRestore(ctx, rs.Key, true) // those not stopped are orphans
		return 0, 0, err
	}
	if err := c.awaitServing(ctx, d.From, d.FromModel, launchedURLs(l)); err != nil {
		return len(l), time.Since(start), err
	}
	return len(l), time.Since(start), nil
}

// awaitServing checks the replicas urls of pool name until each is
// healthy (health.rise passing checks that it serves model), bounded by
// the probe timeout plus the wake timeout.
func (c *Controller) awaitServing(ctx context.Context, name, model string, urls []string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout+c.opts.Settings.WakeTimeout)
	defer cancel()
	set := c.opts.Settings
	for {
		var waiting []*pool.Replica
		if p := c.Pool(name); p != nil {
			for _, r := range p.Replicas {
				if slices.Contains(urls, r.Name) && !r.Healthy() {
					waiting = append(waiting, r)
				}
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		errs := c.probeAll(ctx, waiting, model)
		var last []string
		ready := true
		for i, r := range waiting {
			r.RecordCheck(c.now(), errs[i], set.Rise, set.Fall)
			if errs[i] != nil {
				last = append(last, fmt.Sprintf("%s: %v", r.Name, errs[i]))
			}
			ready = ready && r.Healthy()
		}
		if ready {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if len(last) == 0 {
				last = []string{"not enough passing checks yet"}
			}
			return fmt.Errorf("waiting until the started replicas serve %s: %s", model, strings.Join(last, "; "))
		case <-t.C:
		}
	}
}

// restoreLater starts, for each deployment a rollback with now left with
// replicas to start again (Deployment.RestoreLater), the background
// restore of its pool, unless one runs or waits for its backoff.
func (c *Controller) restoreLater(ctx context.Context, st *State) {
	for _, d := range st.Deployments {
		if d.RestoreLater == 0 {
			continue
		}
		t := &c.shrinks
		t.mu.Lock()
		if t.running == nil {
			t.running = map[string]bool{}
		}
		busy := t.running[d.ID] || c.now().Before(t.retry["restore "+d.ID].at)
		if !busy {
			t.running[d.ID] = true
		}
		t.mu.Unlock()
		if busy {
			continue
		}
		id := d.ID
		t.bg.Go(func() {
			defer func() {
				t.mu.Lock()
				delete(t.running, id)
				t.mu.Unlock()
			}()
			c.restoreInBackground(ctx, id)
		})
	}
}

// restoreInBackground brings the pool that a rollback with now made live
// again on fewer replicas back to full size: it launches the missing ones
// through the agents, then adds them to the pool (they take traffic once
// their health checks pass). It gives up when the pool is no longer live,
// and retries a failed launch with backoff.
func (c *Controller) restoreInBackground(ctx context.Context, id string) {
	st, _, _ := c.snapshot()
	d := st.find(id)
	if d == nil || d.RestoreLater == 0 {
		return
	}
	if st.Live != d.From {
		c.clearRestoreLater(ctx, id, fmt.Sprintf("%s not brought back to full size: it is no longer live", d.From))
		return
	}
	if !c.launch.begin(d.FromModel, c.now()) {
		return // a deploy is launching: the next reconcile tries again
	}
	start := time.Now()
	// Persisted before any agent is asked (see restore.go); one a
	// previous controller left is carried on with its keys.
	rs := RestoreState{Key: restoreKey(id), Deployment: id, Pool: d.From, Model: d.FromModel, N: d.RestoreLater, Later: true, Since: c.now().UTC()}
	if prev := st.restoreOf(id, true); prev != nil {
		rs = *prev
		c.log.Info("carrying on the background restore left by the previous controller", "restore", rs.Key, "deployment", id, "slots", len(rs.Slots))
	} else if err := c.recordRestore(ctx, rs, false); err != nil {
		c.launch.end()
		c.log.Warn("background restore: recording it", "deployment", id, "err", err)
		return
	}
	l, err := c.runRestore(ctx, rs, false, c.launch.slots)
	c.launch.end()
	if ctx.Err() != nil {
		return // shutting down: carried on after restart
	}
	if err != nil {
		wait := c.shrinks.failed("restore "+id, c.now(), err.Error())
		c.log.Warn("background restore: starting replicas through the agents failed", "deployment", id, "pool", d.From, "err", err, "retry_in", wait)
		c.tmu.Lock()
		defer c.tmu.Unlock()
		_ = c.commit(context.WithoutCancel(ctx), "controller", func(s *State) ([]event, error) {
			dropRestore(s, rs.Key) // the launcher stopped those it started
			return []event{{Action: "restore_failed", Deployment: id, To: d.From, Reason: fmt.Sprintf(
				"starting %d replica(s) of %s through the agents to bring %s back to full size: %v; next try in %s", d.RestoreLater, d.FromModel, d.From, err, wait)}}, nil
		})
		return
	}
	took := time.Since(start)
	c.tmu.Lock()
	defer c.tmu.Unlock()
	kept := false
	err = c.commit(context.WithoutCancel(ctx), "controller", func(s *State) ([]event, error) {
		cur := s.find(id)
		if cur == nil || cur.RestoreLater == 0 || s.Live != cur.From {
			return nil, errStale
		}
		dropRestore(s, rs.Key)
		spec := c.addLaunched(s, cur.From, l)
		cur.RestoreLater = 0
		kept = true
		return []event{{Action: "restore", Deployment: id, To: cur.From, Reason: fmt.Sprintf(
			"after the rollback with --now: %s brought back to %d replica(s) in the background: started %s through the agents in %s (they take traffic once healthy)",
			cur.From, len(spec.Replicas), strings.Join(launchedURLs(l), ", "), took.Round(time.Millisecond))}}, nil
	})
	if kept && err == nil {
		return
	}
	// Not recorded (the pool is no longer live, or the store failed):
	// stop them again rather than leave them unknown.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if serr := c.stopLaunched(sctx, l); serr != nil {
		c.log.Error("stopping replicas a background restore could not record", "deployment", id, "err", serr)
	}
	if errors.Is(err, errStale) {
		c.clearRestoreLaterLocked(ctx, id, fmt.Sprintf("%s not brought back to full size: it is no longer live", d.From))
	}
	c.endRestore(ctx, rs.Key, true) // those not stopped are orphans
}

// clearRestoreLater gives up the background restore of deployment id.
func (c *Controller) clearRestoreLater(ctx context.Context, id, why string) {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.clearRestoreLaterLocked(ctx, id, why)
}

// clearRestoreLaterLocked is clearRestoreLater with tmu held.
func (c *Controller) clearRestoreLaterLocked(ctx context.Context, id, why string) {
	c.commitStep(context.WithoutCancel(ctx), true, "background restore: recording that it ends", func(s *State) ([]event, error) {
		cur := s.find(id)
		if cur == nil || cur.RestoreLater == 0 {
			return nil, errStale
		}
		cur.RestoreLater = 0
		if rs := s.restoreOf(id, true); rs != nil {
			dropRestore(s, rs.Key) // what it started is stopped as orphans
		}
		return []event{{Action: "restore", Deployment: id, To: cur.From, Reason: why}}, nil
	}, "deployment", id)
}

// addLaunched adds the launched replicas l to pool name in s and returns
// its new spec.
func (c *Controller) addLaunched(s *State, name string, l []LaunchedReplica) PoolSpec {
	spec := c.specOf(*s, name)
	spec.Replicas = append(slices.Clone(spec.Replicas), launchedURLs(l)...)
	spec.Launched = append(slices.Clone(spec.Launched), l...)
	if s.Pools == nil {
		s.Pools = map[string]PoolSpec{}
	}
	s.Pools[name] = spec
	return spec
}

// restoreKey is a fresh key prefix (agent.StartRequest.Key) for the
// replicas a restore of deployment id starts: each attempt its own, so
// an agent never answers one an earlier attempt started (and stopped).
// It is persisted with the restore (RestoreState.Key), so a restarted
// controller asks again with the same keys.
func restoreKey(id string) string {
	return fmt.Sprintf("restore-%s-%d", id, time.Now().UnixNano())
}
