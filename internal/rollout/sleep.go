package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// Retention modes (rollout.retention_mode).
const (
	// RetentionKeep keeps the old pool awake during its retention.
	RetentionKeep = "keep"
	// RetentionSleep puts the old pool's replicas to sleep (vLLM's
	// POST /sleep?level=1) during retention; a rollback wakes them
	// (POST /wake_up), checks GET /is_sleeping, then switches.
	RetentionSleep = "sleep"
)

// sleepTracker remembers, per deployment, the retained replicas put to
// sleep and those that could not be. It is not persisted: after a restart
// the controller asks again (sleeping a sleeping vLLM is a no-op).
type sleepTracker struct {
	// op serialises putting a pool to sleep and waking it, so that a
	// reconcile that observed the old pool retained never sends /sleep
	// after a rollback woke it.
	op sync.Mutex
	// stopSleep, set while keepRetainedAsleep's /sleep calls run (under
	// op), cancels them: a rollback does not wait for a slow or hung
	// /sleep before it wakes the pool. Guarded by mu.
	stopSleep context.CancelFunc

	mu      sync.Mutex          // guards the maps
	asleep  map[string][]string // deployment id -> replicas asleep
	awake   map[string][]string // deployment id -> replicas kept awake, with why
	checked map[string]bool     // deployment id -> every replica tried
	woken   map[string]bool     // deployment id -> a rollback woke its old pool: never sleep it again
	pool    map[string]string   // deployment id -> the pool put to sleep

	// After a rollback: "pool replicaURL" of the live pool's replicas
	// found still asleep (the rollback's wake did not reach them), the
	// rolled-back deployments whose pool answered awake throughout, and
	// how many rounds found a replica that did not answer.
	leftAsleep map[string]bool
	allAwake   map[string]bool
	silent     map[string]int
	// outOfRotation are the live replicas found asleep, taken out of
	// rotation (pool.Replica.SetAsleep) until found awake.
	outOfRotation map[*pool.Replica]bool
}

// rotate puts r in rotation (asleep false) or takes it out, remembering
// which it took out; t.mu must be held.
func (t *sleepTracker) rotateLocked(r *pool.Replica, asleep bool) {
	r.SetAsleep(asleep)
	if t.outOfRotation == nil {
		t.outOfRotation = map[*pool.Replica]bool{}
	}
	if asleep {
		t.outOfRotation[r] = true
	} else {
		delete(t.outOfRotation, r)
	}
}

// restoreRotation is restoreRotationLocked, taking t.mu.
func (t *sleepTracker) restoreRotation() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restoreRotationLocked()
}

// restoreRotationLocked puts every replica taken out back in rotation:
// their pool is no longer the rolled-back live one this tracks; t.mu must
// be held.
func (t *sleepTracker) restoreRotationLocked() {
	for r := range t.outOfRotation {
		r.SetAsleep(false)
	}
	t.outOfRotation = nil
}

// asleepSet returns "pool replicaURL" for every replica kept asleep by a
// deployment still in its retention (promoted) in st: as this gateway put
// them to sleep, or as the one that did recorded it (Deployment.Asleep).
func (t *sleepTracker) asleepSet(st *State) map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]bool{}
	for _, d := range st.Deployments {
		if d.Phase != PhasePromoted || t.woken[d.ID] {
			continue
		}
		for _, r := range d.Asleep {
			out[d.From+" "+r] = true
		}
	}
	for id, rs := range t.asleep {
		if d := st.find(id); t.woken[id] || d == nil || d.Phase != PhasePromoted {
			continue
		}
		for _, r := range rs {
			out[t.pool[id]+" "+r] = true
		}
	}
	for k := range t.leftAsleep {
		out[k] = true
	}
	return out
}

// sleepingPoolLocked names the pool a promoted deployment retains asleep
// under rollout.retention_mode: sleep, "" when there is none. It goes by
// the state alone, so every gateway of a fleet (not only the leader that
// sends /sleep) keeps requests naming that pool off its replicas; from the
// promotion on, until a rollback makes it live or its retirement begins.
// c.mu must be held.
func (c *Controller) sleepingPoolLocked() string {
	if c.opts.Settings.RetentionMode != RetentionSleep {
		return ""
	}
	d := c.st.active()
	if d == nil || (d.Phase != PhasePromoted && d.Phase != PhaseRetiring) || d.From == "" || d.From == c.st.Live {
		return ""
	}
	return d.From
}

// initLocked makes the maps; t.mu must be held.
func (t *sleepTracker) initLocked() {
	if t.checked == nil {
		t.asleep, t.awake = map[string][]string{}, map[string][]string{}
		t.checked, t.woken = map[string]bool{}, map[string]bool{}
		t.pool = map[string]string{}
		t.allAwake, t.silent = map[string]bool{}, map[string]int{}
	}
}

// silentRounds is how many reconciles wakeLeftAsleep asks again a replica
// that does not answer GET /is_sleeping (down ones are the health
// checks' business; a slow one may still be asleep once it answers).
const silentRounds = 60

// wakeLeftAsleep wakes the replicas a rollback's wake left asleep. A
// rollback wakes the retained pool and switches once one replica is awake;
// one that did not answer /wake_up in time stayed asleep in the live pool,
// passing health checks (vLLM's /health answers while asleep) and failing
// every completion with 503, with nothing waking it again. So after a
// rollback (or the abort of a promoted deployment) under
// retention_mode: sleep, each reconcile asks the live pool's replicas
// GET /is_sleeping and sends /wake_up to those that sleep (each call
// bounded by the probe timeout), until every one answers awake; the
// status shows those still asleep. On the leader only, like every
// reconcile step, and again after a restart (one GET per replica).
func (c *Controller) wakeLeftAsleep(ctx context.Context, st *State, pools map[string]*pool.Pool) {
	if c.opts.Settings.RetentionMode != RetentionSleep {
		return
	}
	t := &c.sleep
	d := st.latest()
	if d == nil || (d.Phase != PhaseRolledBack && d.Phase != PhaseAborted) || d.From == "" || d.From != st.Live || pools[d.From] == nil {
		t.mu.Lock()
		t.leftAsleep = nil // another deployment, or the pool is no longer live
		t.restoreRotationLocked()
		t.mu.Unlock()
		return
	}
	t.mu.Lock()
	t.initLocked()
	done := t.allAwake[d.ID]
	t.mu.Unlock()
	if done {
		return
	}
	left, unknown := map[string]bool{}, false
	for _, r := range pools[d.From].Replicas {
		pctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout)
		sleeping, err := c.isSleeping(pctx, r)
		if err == nil {
			// Asleep, it fails every completion while its /health
			// passes: no request goes to it until it answers awake.
			t.mu.Lock()
			t.rotateLocked(r, sleeping)
			t.mu.Unlock()
		}
		if err == nil && sleeping {
			left[d.From+" "+r.Name] = true
			if werr := c.replicaCall(pctx, r, "/wake_up"); werr != nil {
				c.log.Warn("replica left asleep by the rollback: wake_up failed; trying again", "deployment", d.ID, "replica", r.Name, "err", werr)
			} else {
				c.log.Info("replica left asleep by the rollback: woken", "deployment", d.ID, "replica", r.Name)
			}
		}
		cancel()
		var nf *notFoundError
		if err != nil && !errors.As(err, &nf) && !strings.Contains(err.Error(), ": 404") {
			unknown = true // no answer: ask again at the next reconcile (up to silentRounds)
		}
	}
	t.mu.Lock()
	t.leftAsleep = left
	if unknown {
		t.silent[d.ID]++
	}
	if len(left) == 0 && (!unknown || t.silent[d.ID] >= silentRounds) {
		t.allAwake[d.ID] = true
		t.restoreRotationLocked() // from now on the health checks' business
	}
	t.mu.Unlock()
}

// keepRetainedAsleep puts the old pool of a promoted deployment to sleep
// once, when rollout.retention_mode is sleep, and notes it in the status.
func (c *Controller) keepRetainedAsleep(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) {
	if c.opts.Settings.RetentionMode != RetentionSleep {
		return
	}
	t := &c.sleep
	t.mu.Lock()
	t.initLocked()
	done := t.checked[d.ID] || t.woken[d.ID]
	t.mu.Unlock()
	if !done {
		// vLLM's /sleep aborts the requests it runs: first let those the
		// promotion left on the old pool finish, as a retirement does,
		// up to drain_timeout after the promotion.
		mode := "wait"
		if busy, what := c.oldPoolBusy(ctx, pools[d.From]); busy {
			drained := d.PromotedAt.Add(c.opts.Settings.DrainTimeout)
			if c.now().Before(drained) {
				c.setNote(d.ID, fmt.Sprintf("retained pool %s is put to sleep once %s (at the latest %s)", d.From, what, stamp(drained)))
				return
			}
			mode = "abort"
			c.log.Warn("retention: drain timeout: putting the old pool to sleep with requests still on it", "deployment", d.ID, "pool", d.From, "busy", what)
		}
		t.op.Lock()
		defer t.op.Unlock()
		// Look again now that no wake can run: a rollback may have
		// happened since this reconcile's snapshot.
		st, _, _ := c.snapshot()
		t.mu.Lock()
		woken := t.woken[d.ID]
		sctx, stop := context.WithCancel(ctx)
		t.stopSleep = stop
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			t.stopSleep = nil
			t.mu.Unlock()
			stop()
		}()
		if cur := st.find(d.ID); woken || cur == nil || cur.Phase != PhasePromoted {
			return
		}
		old := pools[d.From]
		var asleep, awake []string
		if old != nil {
			// All at once: a slow or hung replica holds the others (and
			// a rollback, which cancels this) for one call, not one each.
			errs := pool.CheckEach(sctx, old.Replicas, func(ctx context.Context, r *pool.Replica) error {
				return c.replicaCall(ctx, r, "/sleep?level=1&mode="+mode)
			})
			for i, r := range old.Replicas {
				if err := errs[i]; err != nil {
					var nf *notFoundError
					if !errors.As(err, &nf) {
						err = fmt.Errorf("its /sleep failed: %w", err)
					}
					awake = append(awake, fmt.Sprintf("%s (%v)", r.Name, err))
					c.log.Warn("retention: replica kept awake", "deployment", d.ID, "replica", r.Name, "err", err)
					continue
				}
				asleep = append(asleep, r.Name)
			}
		}
		if sctx.Err() != nil {
			return // shutting down, or a rollback is waking the pool
		}
		t.mu.Lock()
		t.asleep[d.ID], t.awake[d.ID], t.checked[d.ID] = asleep, awake, true
		t.pool[d.ID] = d.From
		t.mu.Unlock()
		c.log.Info("retention: old pool put to sleep", "deployment", d.ID, "pool", d.From, "asleep", len(asleep), "kept_awake", len(awake))
	}
	t.mu.Lock()
	asleep, awake, woken := t.asleep[d.ID], t.awake[d.ID], t.woken[d.ID]
	t.mu.Unlock()
	if woken { // a rollback woke it (and may have been refused after)
		c.setNote(d.ID, "")
		return
	}
	var note string
	switch {
	case len(asleep) == 0:
		note = fmt.Sprintf("retained pool %s kept awake until %s: none of its replicas went to sleep (vLLM's sleep mode: %s)", d.From, stamp(d.RetainUntil), strings.Join(awake, ", "))
	default:
		note = fmt.Sprintf("retained pool %s asleep (%d replicas, vLLM sleep level 1) until %s; a rollback wakes it first", d.From, len(asleep), stamp(d.RetainUntil))
		if len(awake) > 0 {
			note += fmt.Sprintf("; kept awake: %s", strings.Join(awake, ", "))
		}
	}
	c.setNote(d.ID, note)
}

// unwake undoes wakeRetained's mark when the rollback it prepared was
// refused (or its wake failed): the pool is retained again, so the next
// reconcile puts it back to sleep and the status says so.
func (t *sleepTracker) unwake(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.initLocked()
	delete(t.woken, id)
	delete(t.checked, id)
}

// oldPoolBusy reports whether old (a retained pool) still has requests: in
// flight through this gateway or (a fleet) the others, or running and
// waiting on its engines when clients reach them through a load
// balancer (a driver), and says what, for the status.
func (c *Controller) oldPoolBusy(ctx context.Context, old *pool.Pool) (bool, string) {
	if old == nil {
		return false, ""
	}
	if n, _ := c.fleetInFlight(old); n > 0 {
		return true, fmt.Sprintf("its %d request(s) in flight are done", n)
	}
	if c.opts.EngineBusy != nil {
		switch busy, err := c.opts.EngineBusy(ctx, old); {
		case err != nil:
			return true, fmt.Sprintf("its engines say what they still serve (their metrics cannot be read: %v)", err)
		case busy > 0:
			return true, fmt.Sprintf("its engines' %d request(s) sent through the load balancer are done", busy)
		}
	}
	return false, ""
}

// recordAsleep writes the replicas keepRetainedAsleep put to sleep into
// d's record (Deployment.Asleep), once, for the other gateways of a fleet
// and for the status after a restart. Not while putting them to sleep:
// a rollback holds the transition lock while it waits to wake them.
func (c *Controller) recordAsleep(ctx context.Context, d *Deployment) {
	t := &c.sleep
	t.mu.Lock()
	asleep, checked, woken := t.asleep[d.ID], t.checked[d.ID], t.woken[d.ID]
	t.mu.Unlock()
	if !checked || woken || slices.Equal(d.Asleep, asleep) {
		return
	}
	c.commitStep(ctx, false, "recording the retained replicas put to sleep", func(s *State) ([]event, error) {
		cur := s.find(d.ID)
		t.mu.Lock()
		woken := t.woken[d.ID]
		t.mu.Unlock()
		if cur == nil || cur.Phase != PhasePromoted || woken {
			return nil, errStale
		}
		cur.Asleep = slices.Clone(asleep)
		return nil, nil
	}, "deployment", d.ID)
}

// wakeRetained wakes the old pool of d before a rollback, when
// rollout.retention_mode is sleep, and waits until every replica says it
// is awake. It returns how many replicas it woke and how long that took
// (wall time, whatever the controller's clock).
func (c *Controller) wakeRetained(ctx context.Context, d *Deployment, pools map[string]*pool.Pool) (int, time.Duration, error) {
	if c.opts.Settings.RetentionMode != RetentionSleep || d == nil {
		return 0, 0, nil
	}
	t := &c.sleep
	t.mu.Lock()
	t.initLocked()
	// Marked before taking op: a reconcile that gets op first sees it and
	// sends no /sleep (unwake clears it if the rollback is refused).
	t.woken[d.ID] = true
	if t.stopSleep != nil {
		t.stopSleep() // a sleep in progress gives way
	}
	t.mu.Unlock()
	t.op.Lock() // waits for that sleep to end
	defer t.op.Unlock()
	old := pools[d.From]
	if old == nil {
		return 0, 0, nil
	}
	start := time.Now()
	// All at once: the rollback waits for the slowest replica, not for the
	// sum of them (nor for one wake_timeout per replica that hangs). Once
	// one woke, the others have three times its wake time and the
	// straggler grace: replicas on like hardware wake in like times, and
	// a hung one must not hold an urgent rollback for the whole
	// wake_timeout. Those cut short are left to the reconciles, which wake
	// the live pool's sleeping replicas (wakeLeftAsleep).
	callCtx, cut := context.WithCancel(ctx)
	defer cut()
	results := make([]error, len(old.Replicas))
	done := make(chan int, len(old.Replicas))
	for i, r := range old.Replicas {
		go func() {
			err := c.replicaCall(callCtx, r, "/wake_up")
			if err == nil {
				err = c.awaitAwake(callCtx, r)
			}
			results[i] = err
			done <- i
		}()
	}
	var (
		straggle <-chan time.Time
		waited   time.Duration // the stragglers' wait, once set
		wasCut   bool
		cutShort = make([]bool, len(old.Replicas))
	)
	for left := len(old.Replicas); left > 0; {
		select {
		case i := <-done:
			left--
			cutShort[i] = wasCut
			if results[i] == nil && straggle == nil && !wasCut && left > 0 {
				first := time.Since(start)
				waited = 2*first + c.stragglerGrace()
				tm := time.NewTimer(waited)
				defer tm.Stop()
				straggle = tm.C
			}
		case <-straggle:
			straggle, wasCut = nil, true
			cut()
		}
	}
	var errs []error
	woke := 0
	for i, err := range results {
		var nf *notFoundError
		if errors.As(err, &nf) {
			continue // no sleep mode: it was kept awake
		}
		if err != nil {
			if cutShort[i] {
				err = fmt.Errorf("not awake %s after the first replica woke (the reconciles go on waking it): %w", waited.Round(time.Millisecond), err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", old.Replicas[i].Name, err))
			continue
		}
		woke++
	}
	if woke == 0 && len(errs) > 0 {
		return 0, 0, errors.Join(errs...)
	}
	for _, err := range errs {
		c.log.Warn("rollback: replica not woken", "deployment", d.ID, "err", err)
	}
	t.mu.Lock()
	delete(t.asleep, d.ID)
	delete(t.awake, d.ID)
	t.mu.Unlock()
	return woke, time.Since(start), nil
}

// stragglerGrace is Options.WakeStragglerGrace with its default.
func (c *Controller) stragglerGrace() time.Duration {
	if c.opts.WakeStragglerGrace > 0 {
		return c.opts.WakeStragglerGrace
	}
	return 10 * time.Second
}

// awaitAwake polls GET /is_sleeping until it says false, bounded by the
// probe timeout plus the wake timeout.
func (c *Controller) awaitAwake(ctx context.Context, r *pool.Replica) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout+c.opts.Settings.WakeTimeout)
	defer cancel()
	for {
		sleeping, err := c.isSleeping(ctx, r)
		if err == nil && !sleeping {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = errors.New("still asleep")
			}
			return fmt.Errorf("waiting for the wake: %w", err)
		case <-t.C:
		}
	}
}

// notFoundError is a replica without vLLM's sleep-mode routes.
type notFoundError struct{ path string }

func (e *notFoundError) Error() string {
	return "no " + e.path + " (start vLLM with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1)"
}

// replicaCall sends POST path (vLLM's sleep-mode routes) to r, with its
// key, and wants 200.
func (c *Controller) replicaCall(ctx context.Context, r *pool.Replica, path string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout+c.opts.Settings.WakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Name+path, nil)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	r.SetAuthorization(req.Header)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return &notFoundError{path: strings.SplitN(path, "?", 2)[0]}
	}
	return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
}

// isSleeping asks GET /is_sleeping of r, with its key.
func (c *Controller) isSleeping(ctx context.Context, r *pool.Replica) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Name+"/is_sleeping", nil)
	if err != nil {
		return false, err
	}
	r.SetAuthorization(req.Header)
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET /is_sleeping: %w", err)
	}
	defer resp.Body.Close()
	var v struct {
		IsSleeping bool `json:"is_sleeping"`
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET /is_sleeping: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 512)).Decode(&v); err != nil {
		return false, fmt.Errorf("GET /is_sleeping: %w", err)
	}
	return v.IsSleeping, nil
}
