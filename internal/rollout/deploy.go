package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
)

// Deploy puts a new version into the standby pool and starts its
// lifecycle. It refuses (409) while another deployment is in progress,
// and while the standby is retained for rollback unless req.Force, which
// ends that retention now: the retained pool is drained and retired
// before the new deployment starts warming.
func (c *Controller) Deploy(ctx context.Context, actor string, req api.DeployRequest) (_ api.DeployResult, err error) {
	ctx, end := c.span(ctx, "deploy", actor)
	defer func() { end(err) }()
	if strings.TrimSpace(req.Model) == "" {
		return api.DeployResult{}, badRequest("bad_model", "model is required: the model id the new replicas serve")
	}
	if err := pool.CheckModelID(req.Model); err != nil {
		return api.DeployResult{}, badRequest("bad_model", "%v", err)
	}
	if len(req.Replicas) > pool.MaxReplicas {
		return api.DeployResult{}, badRequest("bad_replica", "%d replicas: at most %d per pool", len(req.Replicas), pool.MaxReplicas)
	}
	if len(req.Replicas) > 0 {
		return c.deploy(ctx, actor, req, nil, "")
	}
	if req.APIKeyFile != "" { // before replicas are started for it
		if err := c.keyFileAllowed(req.APIKeyFile); err != nil {
			return api.DeployResult{}, badRequest("bad_api_key_file", "api_key_file: %v", err)
		}
	}
	// Refuse before starting anything when the deployment would be
	// refused anyway; decided again after the launch.
	c.tmu.Lock()
	v := c.view()
	dec := decideDeploy(v, req)
	c.tmu.Unlock()
	if !dec.Allowed {
		return api.DeployResult{}, dec.refusal()
	}
	c.stopStaleStandby(ctx, v.State, dec.Forced)
	l, id, err := c.launchFor(ctx, actor, req)
	if err != nil {
		var r *Refusal
		if d := v.State.active(); errors.As(err, &r) && r.Code == "launch_failed" && d != nil && d.Phase == PhasePromoted && len(d.FromLaunched) > 0 {
			// The replicas start before a forced deploy ends the
			// retention, so the retained pool's GPUs are still held.
			r.Reason += fmt.Sprintf("; the retained pool %s still holds %d agent replica(s) and their GPUs until its retirement, which a forced deploy starts only once its own replicas run: `cutover retire` first frees them", d.From, len(d.FromLaunched))
		}
		return api.DeployResult{}, err
	}
	return c.deployLaunched(ctx, actor, req, id, l)
}

// deployLaunched makes the deployment of the replicas launch id started;
// refused, it stops them and clears the launch.
func (c *Controller) deployLaunched(ctx context.Context, actor string, req api.DeployRequest, id string, l []LaunchedReplica) (api.DeployResult, error) {
	req.Replicas = launchedURLs(l)
	res, err := c.deploy(ctx, actor, req, l, id)
	if err == nil {
		return res, nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if serr := c.stopLaunched(sctx, l); serr != nil {
		c.log.Error("stopping the replicas launched for a refused deployment", "model", req.Model, "err", serr)
	}
	c.endLaunch(sctx, id, fmt.Sprintf("the deployment of launch %s (%s) was refused, its replicas stopped: %v", id, req.Model, err))
	return res, err
}

// deploy makes the deployment of req's replicas; launched are those the
// agents started for it (launch launchID, cleared from the state with
// the deployment's commit), none when the request named them.
func (c *Controller) deploy(ctx context.Context, actor string, req api.DeployRequest, launched []LaunchedReplica, launchID string) (api.DeployResult, error) {
	var stale []LaunchedReplica
	deployed := false
	defer func() {
		// Replicas given with --replica replaced the standby's launched
		// ones: stop those (after the lock is released).
		if deployed && len(stale) > 0 {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if err := c.stopLaunched(sctx, stale); err != nil {
				c.log.Warn("stopping the standby pool's previous agent replicas; retried as orphans", "err", err)
				return
			}
			c.forgetOrphans(sctx, stale)
		}
	}()
	replicas := make([]string, 0, len(req.Replicas))
	for i, raw := range req.Replicas {
		u, err := pool.NormalizeURL(raw)
		if err != nil {
			return api.DeployResult{}, badRequest("bad_replica", "replicas[%d]: %v", i, err)
		}
		if slices.ContainsFunc(replicas, func(r string) bool { return pool.ReplicaKey(r) == pool.ReplicaKey(u) }) {
			return api.DeployResult{}, badRequest("bad_replica", "replicas[%d]: duplicate replica %q", i, raw)
		}
		replicas = append(replicas, u)
	}
	if err := c.notSelf(ctx, replicas); err != nil {
		return api.DeployResult{}, err
	}
	if req.APIKeyFile != "" {
		if err := c.keyFileAllowed(req.APIKeyFile); err != nil {
			return api.DeployResult{}, badRequest("bad_api_key_file", "api_key_file: %v", err)
		}
		if _, err := c.readKey(req.APIKeyFile); err != nil {
			return api.DeployResult{}, badRequest("bad_api_key_file", "api_key_file: %v", err)
		}
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	v := c.view()
	if l := v.State.Launch; l != nil && l.ID == launchID {
		v.State.Launch = nil // its own launch, done
	}
	st := v.State
	target := standby(st)
	live := c.specOf(st, st.Live)
	for _, r := range replicas {
		if slices.ContainsFunc(live.Replicas, func(l string) bool { return pool.ReplicaKey(l) == pool.ReplicaKey(r) }) {
			return api.DeployResult{}, badRequest("bad_replica", "replica %s serves the live pool %s; a new version needs its own replicas", r, st.Live)
		}
	}
	dec := decideDeploy(v, req)
	if !dec.Allowed {
		return api.DeployResult{}, dec.refusal()
	}
	if r := st.hookBacklog(); r != nil {
		return api.DeployResult{}, r
	}
	var ended *Deployment
	if dec.Forced {
		ended = st.find(dec.Deployment)
	}
	if launched == nil && !dec.Forced {
		stale = slices.Clone(c.specOf(st, target).Launched)
	}
	var res api.DeployResult
	err := c.commit(ctx, actor, func(s *State) ([]event, error) {
		now := c.now().UTC()
		if launchID != "" && s.Launch != nil && s.Launch.ID == launchID {
			s.Launch = nil // its replicas are the deployment's now
		}
		s.NextID++
		d := &Deployment{
			ID: fmt.Sprintf("d-%d", s.NextID), Pool: target, Model: req.Model, Replicas: replicas,
			From: s.Live, FromModel: live.Model, FromReplicas: slices.Clone(live.Replicas), APIKeyFile: req.APIKeyFile,
			CreatedAt: now, CreatedBy: actor,
			Launched: launched, FromLaunched: slices.Clone(live.Launched),
		}
		var evs []event
		if ended != nil {
			old := s.find(ended.ID)
			old.RetainUntil, old.Deadline = now, now
			old.Reason = fmt.Sprintf("retention ended early by --force deploy %s (%s)", d.ID, actor)
			if inPostPromotion(old, now) {
				old.PostPromotionUntil = now
				old.Reason += "; its post-promotion checks (automatic rollback) ended too"
			}
			res.Note = fmt.Sprintf("--force ended the retention of pool %s (deployment %s): rollback to %s is no longer possible. %s will be drained and retired (on_retire hooks) before %s starts warming.", target, old.ID, old.FromModel, target, d.ID)
			evs = append(evs, event{Action: "retention_ended", Deployment: old.ID, Reason: old.Reason, Forced: true})
			d.enter(PhasePending, now, "waiting for "+old.ID+" to retire pool "+target, time.Time{})
		} else {
			c.startWarming(s, d, now)
		}
		s.add(d)
		evs = append(evs, event{Action: "deploy", Deployment: d.ID, To: string(d.Phase), Reason: fmt.Sprintf("model %s on %s into %s", d.Model, strings.Join(d.Replicas, ", "), d.Pool)})
		res.Deployment = c.apiDeployment(d, nil)
		return evs, nil
	})
	if err == nil {
		deployed = true
		if ended != nil {
			c.endWindowOf(ended.ID)
		}
		c.poke()
	}
	return res, err
}

// specOf is the effective spec of pool name in s.
func (c *Controller) specOf(s State, name string) PoolSpec {
	if p, ok := s.Pools[name]; ok {
		return p
	}
	return c.configuredPool(name)
}

// startWarming gives d's pool its new replicas and enters the first
// pre-cutover phase with the progress deadline.
func (c *Controller) startWarming(s *State, d *Deployment, now time.Time) {
	if s.Pools == nil {
		s.Pools = map[string]PoolSpec{}
	}
	s.Pools[d.Pool] = PoolSpec{Model: d.Model, Replicas: slices.Clone(d.Replicas), SetBy: d.ID, APIKeyFile: d.APIKeyFile, Launched: slices.Clone(d.Launched)}
	d.enter(preCutover[0], now, fmt.Sprintf("waiting for %s to become healthy, serve %s and warm up", d.Pool, d.Model), now.Add(c.opts.Settings.ProgressDeadline))
	c.pend(d, "on_deploy")
}

// Abort stops the deployment in progress. Before the cutover the new pool
// never got client traffic and the deployment ends aborted; after it,
// abort is a rollback. Once retention is over it is too late.
func (c *Controller) Abort(ctx context.Context, actor string, req api.AbortRequest) (_ api.Deployment, err error) {
	ctx, end := c.span(ctx, "abort", actor)
	defer func() { end(err) }()
	// A promote running its before_promote hooks holds tmu: stop it
	// first, so that the deployment ends aborted, never switched and
	// then rolled back.
	if dec := decideAbort(c.view(), req); dec.Allowed && dec.Deployment != "" {
		c.stopPromote(dec.Deployment, actor)
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	v := c.view()
	dec := decideAbort(v, req)
	if !dec.Allowed {
		return api.Deployment{}, dec.refusal()
	}
	d := v.State.pending()
	if d == nil {
		d = v.State.active()
	}
	id := d.ID
	if d.Phase == PhasePromoted {
		if _, err := c.rollbackLocked(ctx, actor, "abort", api.RollbackRequest{Now: req.Now}); err != nil {
			return api.Deployment{}, err
		}
		return c.deploymentView(id), nil
	}
	err = c.commit(ctx, actor, func(s *State) ([]event, error) {
		d := s.find(id)
		from := d.Phase
		d.enter(PhaseAborted, c.now().UTC(), fmt.Sprintf("aborted by %s while %s; %s never received client traffic", actor, from, d.Pool), time.Time{})
		if from == PhaseCanary || d.Canary.Weight > 0 {
			d.Reason = fmt.Sprintf("aborted by %s while %s at %d%%; every request goes to %s again", actor, from, d.Canary.Weight, d.From)
			d.Canary.Weight = 0
		}
		return []event{{Action: "abort", Deployment: id, From: string(from), To: string(PhaseAborted), Reason: d.Reason}}, nil
	})
	if err != nil {
		return api.Deployment{}, err
	}
	c.poke() // end its validation window now
	return c.deploymentView(id), nil
}

// Retire ends the retention of the promoted deployment now, so the old
// pool is drained and retired. While the post-promotion checks run it
// needs req.Force, and ends them (and their automatic rollback) too.
// During retirement it retries failed on_retire hooks at once; with force
// it marks the pool retired without waiting for them (the operator took
// care of the GPUs). See decideRetire.
func (c *Controller) Retire(ctx context.Context, actor string, req api.RetireRequest) (_ api.Deployment, err error) {
	ctx, end := c.span(ctx, "retire", actor)
	defer func() { end(err) }()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	dec := decideRetire(c.view(), req)
	if !dec.Allowed {
		return api.Deployment{}, dec.refusal()
	}
	id := dec.Deployment
	endedWindow := false
	err = c.commit(ctx, actor, func(s *State) ([]event, error) {
		d := s.find(id)
		now := c.now().UTC()
		switch {
		case d.Phase == PhasePromoted:
			d.RetainUntil, d.Deadline = now, now
			ended := "the retention of " + d.From
			if inPostPromotion(d, now) {
				d.PostPromotionUntil, endedWindow = now, true
				ended = fmt.Sprintf("the post-promotion checks (and their automatic rollback to %s) and the retention of %s", d.From, d.From)
			}
			d.Reason = fmt.Sprintf("retire by %s ended %s early: %s is drained and retired, and rollback to it is refused from then on", actor, ended, d.From)
			return []event{{Action: "retention_ended", Deployment: id, Reason: d.Reason, Forced: endedWindow}}, nil
		case req.Force:
			reason := fmt.Sprintf("retirement of %s forced by %s after %d failed on_retire attempt(s): %s", d.From, actor, d.RetireAttempts, d.RetireError)
			c.finishRetirement(s, d, now, reason)
			return []event{{Action: "phase", Deployment: id, From: string(PhaseRetiring), To: string(PhaseCompleted), Reason: reason, Forced: true}}, nil
		default:
			d.NextRetireAttempt = now
			return []event{{Action: "retire_retry", Deployment: id, Reason: "on_retire hooks retried now by " + actor}}, nil
		}
	})
	if err != nil {
		return api.Deployment{}, err
	}
	if endedWindow {
		c.endWindowOf(id)
	}
	c.mu.Lock()
	delete(c.autoRetry, retireHoldKey(id)) // `cutover retire` retries now
	c.mu.Unlock()
	c.poke()
	return c.deploymentView(id), nil
}

// finishRetirement marks d completed and empties its old pool.
func (c *Controller) finishRetirement(s *State, d *Deployment, now time.Time, reason string) {
	d.RetiredAt = now
	d.RetireError, d.NextRetireAttempt = "", time.Time{}
	d.enter(PhaseCompleted, now, reason, time.Time{})
	if s.Pools == nil {
		s.Pools = map[string]PoolSpec{}
	}
	s.Pools[d.From] = PoolSpec{SetBy: d.ID}
}

// selfLookupTimeout bounds the name lookups of the check that a deploy's
// replicas are not the gateway itself.
const selfLookupTimeout = 2 * time.Second

// notSelf refuses replicas that lead back to the gateway's own
// listeners (Options.Self): every request sent to such a pool would come
// back to the gateway, again and again, until the hops header ends it.
func (c *Controller) notSelf(ctx context.Context, replicas []string) error {
	if c.opts.Self == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, selfLookupTimeout)
	defer cancel()
	for i, r := range replicas {
		if m, ok := c.opts.Self.Reaches(ctx, r); ok {
			return badRequest("bad_replica", "replicas[%d]: %s is %s (%s), not a model server: the gateway would send every request of the pool back to itself", i, r, m, m.Host)
		}
	}
	return nil
}
