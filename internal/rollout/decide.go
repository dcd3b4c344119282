package rollout

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
)

// The deciders below say whether an operator action may happen now, and
// why not. They are pure functions of a View, so the status's actions and
// the actions themselves decide with the same code, and tests run the
// whole refusal matrix without a server. The actions add what only the
// moment can tell: a fresh probe of the target pool, before_promote hooks.

// View is what the deciders read: the persisted state at a revision, what
// each pool holds and how healthy it is, and the time.
type View struct {
	State    State
	Revision int64
	// Pools holds each configured pool, by name.
	Pools map[string]PoolView
	Now   time.Time
	// RetentionMode is rollout.retention_mode (RetentionKeep when "").
	RetentionMode string
	// Agents are the agents as last checked, by name; nil without
	// agents (Options.Agents).
	Agents map[string]api.AgentStatus
}

// PoolView is one pool as the deciders see it.
type PoolView struct {
	Model    string
	Replicas int
	Healthy  int
	// Unhealthy says, per unhealthy replica, why ("URL: unhealthy (last
	// error)").
	Unhealthy []string
}

// Decision is a decider's answer.
type Decision struct {
	// Allowed: the action may go ahead.
	Allowed bool
	// Code names the refusal ("" when allowed).
	Code string
	// Reason says why it is refused, or what the action will do.
	Reason string
	// Force: the refusal can be overridden with force.
	Force bool
	// Deployment is the deployment the action concerns ("" for a plain
	// switch); Target the pool a switch makes live.
	Deployment string
	Target     string
	// Forced: force overrode a refusal, to be recorded in the history.
	Forced bool
	// Restore is how many replicas a rollback starts through the agents
	// first, to bring a retained pool that retention_mode shrink made
	// smaller back to full size (0: it switches at once).
	Restore int
	// status is the HTTP status of the refusal; 0 means 409.
	status int
}

func allow(format string, args ...any) Decision {
	return Decision{Allowed: true, Reason: fmt.Sprintf(format, args...)}
}

func deny(code, format string, args ...any) Decision {
	return Decision{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// refusal is d as the error the admin API answers with 409.
func (d Decision) refusal() *Refusal {
	return &Refusal{Code: d.Code, Reason: d.Reason, Status: d.status}
}

// api is d for the status's actions.
func (d Decision) api() api.Action {
	return api.Action{Allowed: d.Allowed, Code: d.Code, Reason: d.Reason, Force: d.Force, Restore: d.Restore}
}

// view builds the View of the current state; runtime pools give health.
func (c *Controller) view() View {
	st, rev, pools := c.snapshot()
	v := viewOf(st, rev, pools, c.agentViews(), c.now().UTC())
	v.RetentionMode = c.opts.Settings.RetentionMode
	return v
}

func viewOf(st State, rev int64, pools map[string]*pool.Pool, agents map[string]api.AgentStatus, now time.Time) View {
	v := View{State: st, Revision: rev, Pools: map[string]PoolView{}, Now: now, Agents: agents}
	for name, p := range pools {
		v.Pools[name] = poolView(p)
	}
	return v
}

// agentViews returns the agents by name, nil without agents.
func (c *Controller) agentViews() map[string]api.AgentStatus {
	if c.opts.Agents == nil {
		return nil
	}
	return agentsByName(c.opts.Agents())
}

// agentsByName indexes list by name; never nil.
func agentsByName(list []api.AgentStatus) map[string]api.AgentStatus {
	out := map[string]api.AgentStatus{}
	for _, a := range list {
		out[a.Name] = a
	}
	return out
}

// canSee refuses an action onto pool name while a replica the agents
// started for it is out of the controller's sight: its agent is down or
// no longer configured, or no longer lists it running. Without agents
// there is nothing to check.
func (v View) canSee(action, name string) (Decision, bool) {
	if v.Agents == nil {
		return Decision{}, true
	}
	var lost []string
	down := false
	for _, r := range v.State.Pools[name].Launched {
		a, ok := v.Agents[r.Agent]
		if !ok {
			lost = append(lost, fmt.Sprintf("%s: its agent %s is not configured", r.URL, r.Agent))
			continue
		}
		if !a.Up {
			down = true
			lost = append(lost, fmt.Sprintf("%s: agent %s is down since %s (%s)", r.URL, r.Agent, stamp(a.Since), a.LastError))
			continue
		}
		i := slices.IndexFunc(a.Replicas, func(ar api.AgentReplica) bool { return ar.ID == r.ID })
		switch {
		case i < 0:
			lost = append(lost, fmt.Sprintf("%s: agent %s no longer lists replica %s", r.URL, r.Agent, r.ID))
		case a.Replicas[i].State != "running":
			lost = append(lost, fmt.Sprintf("%s: replica %s is %s at agent %s", r.URL, r.ID, a.Replicas[i].State, r.Agent))
		}
	}
	if len(lost) == 0 {
		return Decision{}, true
	}
	code := "replica_lost"
	if down {
		code = "agent_down"
	}
	return deny(code, "%s refused: pool %s has replicas the controller cannot see through their agents (%s); %s stays live", action, name, strings.Join(lost, "; "), v.State.Live), false
}

func poolView(p *pool.Pool) PoolView {
	if p == nil {
		return PoolView{}
	}
	pv := PoolView{Model: p.Model, Replicas: len(p.Replicas)}
	for _, r := range p.Replicas {
		if r.Healthy() {
			pv.Healthy++
		} else {
			pv.Unhealthy = append(pv.Unhealthy, fmt.Sprintf("%s: unhealthy (%s)", r.Name, r.Health().LastError))
		}
	}
	return pv
}

// checkRevision refuses when the caller asked for a revision the state
// has moved past: one before the last commit that recorded a history
// event (State.GuardRevision). Commits without one in between (a hook's
// process group recorded or cleared) do not refuse it.
func checkRevision(v View, expected int64) (Decision, bool) {
	if expected == 0 || expected == v.Revision {
		return Decision{}, true
	}
	if g := v.State.GuardRevision; g > 0 && expected >= g && expected < v.Revision {
		// Only commits without a history event (hook bookkeeping) came
		// after expected: nothing an operator decides on changed.
		return Decision{}, true
	}
	return deny("revision_mismatch", "the state is at revision %d, not %d as expected: it changed since you looked (live is %s); check status and retry", v.Revision, expected, v.State.Live), false
}

// other is the pool that is not live.
func (v View) other() string { return standby(v.State) }

// holder is the deployment whose version pool name holds now, or nil
// when it holds what the configuration (or a plain switch) put there.
func (v View) holder(name string) *Deployment {
	p, ok := v.State.Pools[name]
	if !ok || p.SetBy == "" {
		return nil
	}
	return v.State.find(p.SetBy)
}

// retiredBy returns the deployment that retired pool name, when that is
// what the pool holds now (nothing).
func (v View) retiredBy(name string) *Deployment {
	d := v.holder(name)
	if d != nil && d.From == name && d.Phase == PhaseCompleted && !d.RetiredAt.IsZero() && len(v.State.Pools[name].Replicas) == 0 {
		return d
	}
	return nil
}

// unvetted returns the deployment pool name holds when that deployment
// did not pass what the configuration asks (it failed, was aborted, or
// was rolled back), with its outcome in words.
func (v View) unvetted(name string) (*Deployment, string) {
	d := v.holder(name)
	if d == nil || d.Pool != name {
		return nil, ""
	}
	switch d.Phase {
	case PhaseFailed:
		return d, "failed (" + d.Reason + ")"
	case PhaseAborted:
		return d, "was aborted before its promotion (" + d.Reason + "), so it never passed before_promote"
	case PhaseRolledBack:
		return d, "was rolled back (" + d.Reason + ")"
	}
	return nil, ""
}

// canServe refuses a switch to a pool without a healthy replica.
func (v View) canServe(action, name string) (Decision, bool) {
	p := v.Pools[name]
	if d := v.retiredBy(name); d != nil {
		verb := action
		if action == "rollback" {
			verb = "roll back"
		}
		why := ""
		if v.RetentionMode == RetentionStop {
			why = " (rollout.retention_mode is stop: the old pool is retired right after each promotion)"
		}
		return deny("retired", "cannot %s to %s: it was retired at %s when deployment %s completed, and holds no replicas%s", verb, name, stamp(d.RetiredAt), d.ID, why), false
	}
	if p.Replicas == 0 {
		return deny("pool_cannot_serve", "%s refused: pool %s has no replicas; %s stays live", action, name, v.State.Live), false
	}
	if p.Healthy == 0 {
		return deny("pool_cannot_serve", "%s refused: pool %s has no healthy replica (%s); %s stays live", action, name, strings.Join(p.Unhealthy, "; "), v.State.Live), false
	}
	return Decision{}, true
}

// decidePromote: with a deployment in progress it must be ready; without
// one the standby becomes live, unless it holds a version that did not
// pass (force overrides that, and only that).
func decidePromote(v View, req api.PromoteRequest) Decision {
	if d, ok := checkRevision(v, req.ExpectedRevision); !ok {
		return d
	}
	st := v.State
	if d := st.active(); d != nil {
		switch d.Phase {
		case PhaseReady, PhaseCanary:
			if dec, ok := v.canServe("promote", d.Pool); !ok {
				return dec
			}
			if dec, ok := v.canSee("promote", d.Pool); !ok {
				return dec
			}
			dec := allow("deployment %s (model %s) goes live in %s after its before_promote hooks and the preflight completion; %s is retained for rollback", d.ID, d.Model, d.Pool, st.Live)
			dec.Deployment, dec.Target = d.ID, d.Pool
			return dec
		case PhasePromoted:
			return deny("deployment_not_ready", "deployment %s is already promoted (%s); rollback returns to %s", d.ID, d.Reason, d.From)
		case PhaseRetiring:
			return deny("deployment_not_ready", "deployment %s is already promoted and its old pool %s is being retired (%s)", d.ID, d.From, d.Reason)
		default:
			return deny("deployment_not_ready", "deployment %s is %s (%s); it can be promoted once ready", d.ID, d.Phase, d.Reason)
		}
	}
	if d := st.pending(); d != nil {
		return deny("deployment_not_ready", "deployment %s is pending (%s)", d.ID, d.Reason)
	}
	target := v.other()
	if dec, ok := v.canServe("promote", target); !ok {
		return dec
	}
	if dec, ok := v.canSee("promote", target); !ok {
		return dec
	}
	dec := allow("%s (model %s) becomes live once its replicas answer the preflight completion; %s can take the traffic back with rollback", target, v.Pools[target].Model, st.Live)
	dec.Target = target
	if d, outcome := v.unvetted(target); d != nil {
		if !req.Force {
			return Decision{Code: "standby_not_passed", Force: true, Reason: fmt.Sprintf(
				"promote refused: %s holds deployment %s (model %s), which %s; it did not pass what the configuration asks. Deploy again, or `cutover promote --force` (recorded in the history)",
				target, d.ID, d.Model, outcome)}
		}
		dec.Forced, dec.Deployment = true, d.ID
		dec.Reason = fmt.Sprintf("forced: %s holds deployment %s (model %s), which %s", target, d.ID, d.Model, outcome)
	}
	return dec
}

// decideRollback: rollback undoes the last switch. Inside a deployment's
// retention it returns to the retained pool; without a deployment it
// returns to the previous live pool, once: a second rollback (which would
// bring back the version just left) needs req.To.
func decideRollback(v View, req api.RollbackRequest) Decision {
	if d, ok := checkRevision(v, req.ExpectedRevision); !ok {
		return d
	}
	st := v.State
	if req.To != "" {
		if _, ok := v.Pools[req.To]; !ok {
			return Decision{Code: "bad_target", status: http.StatusBadRequest, Reason: fmt.Sprintf("no pool %q: want one of %s", req.To, strings.Join(slices.Sorted(maps.Keys(v.Pools)), ", "))}
		}
		if req.To == st.Live {
			return deny("no_target", "cannot roll back to %s: it is already live", req.To)
		}
	}
	if dec, ok := decideCanaryRollback(v, req); ok {
		return dec
	}
	if d := st.active(); d != nil {
		switch d.Phase {
		case PhasePromoted:
			if v.RetentionMode == RetentionStop {
				return deny("retention_mode_stop", "rollback refused: rollout.retention_mode is stop, so %s (model %s) is retired right after the promotion of deployment %s and is not kept for rollback; deploy %s again instead", d.From, d.FromModel, d.ID, d.FromModel)
			}
			if req.To != "" && req.To != d.From {
				return deny("no_target", "cannot roll back to %s: deployment %s retains %s for rollback", req.To, d.ID, d.From)
			}
			return decideRetainedRollback(v, d, req)
		case PhaseRetiring:
			if v.RetentionMode == RetentionStop {
				return deny("retention_mode_stop", "rollback refused: rollout.retention_mode is stop, so %s is being retired right after the promotion of deployment %s; deploy %s again instead", d.From, d.ID, d.FromModel)
			}
			return deny("retention_over", "cannot roll back to %s: its retention ended at %s and it is being retired (deployment %s)", d.From, stamp(d.RetainUntil), d.ID)
		default:
			return deny("not_promoted", "deployment %s is %s and was never promoted: use `cutover abort` to stop it", d.ID, d.Phase)
		}
	}
	target := req.To
	if target == "" {
		if st.Previous == "" {
			return deny("nothing_to_roll_back", "no previous live pool to roll back to: %s has been live since the first start", st.Live)
		}
		if st.RolledBack {
			how := fmt.Sprintf("roll back with --to %s", st.Previous)
			if d, outcome := v.unvetted(st.Previous); d != nil {
				how = fmt.Sprintf("%s holds deployment %s (model %s), which %s: `cutover promote --force` makes it live anyway", st.Previous, d.ID, d.Model, outcome)
			}
			return deny("already_rolled_back", "the last switch (at %s) was already a rollback from %s to %s; rolling back again would bring back the version just left. To make %s live on purpose: %s",
				stamp(st.SwitchedAt), st.Previous, st.Live, st.Previous, how)
		}
		target = st.Previous
	}
	if dec, ok := v.canServe("rollback", target); !ok {
		return dec
	}
	if d, outcome := v.unvetted(target); d != nil {
		return Decision{Code: "standby_not_passed", Force: false, Reason: fmt.Sprintf(
			"rollback refused: %s holds deployment %s (model %s), which %s; `cutover promote --force` makes it live anyway", target, d.ID, d.Model, outcome)}
	}
	dec := allow("%s (model %s) is live again once its replicas answer the preflight completion", target, v.Pools[target].Model)
	dec.Target = target
	return dec
}

// decideRetainedRollback: a rollback inside d's retention returns to the
// retained pool at once when it has a healthy replica. With
// retention_mode shrink, once the pool was made smaller, it first starts
// the missing replicas through the agents (Decision.Restore) and switches
// when they serve, or with req.Now switches at once onto those left and
// starts the missing ones in the background (see restoreLater).
func decideRetainedRollback(v View, d *Deployment, req api.RollbackRequest) Decision {
	st := v.State
	p := v.Pools[d.From]
	missing := missingReplicas(&st, d)
	var dec Decision
	switch {
	case missing > 0 && !req.Now:
		dec = allow("%s (model %s) is first brought back to its %d replicas (%d started through the agents; the switch waits until they serve %s), then live again once they answer the preflight completion; deployment %s ends rolled back. `rollback --now` switches at once onto the %d left",
			d.From, d.FromModel, p.Replicas+missing, missing, d.FromModel, d.ID, p.Replicas)
		dec.Restore = missing
	case p.Healthy == 0:
		return deny("pool_cannot_serve", "rollback refused: the retained pool %s has no healthy replica; %s stays live", d.From, st.Live)
	case missing > 0:
		dec = allow("%s (model %s) is live again at once on the %d of its %d replicas left (--now), once they answer the preflight completion; the %d missing are then started through the agents in the background; deployment %s ends rolled back",
			d.From, d.FromModel, p.Replicas, p.Replicas+missing, missing, d.ID)
	default:
		dec = allow("%s (model %s) is live again at once, once its replicas answer the preflight completion; deployment %s ends rolled back", d.From, d.FromModel, d.ID)
	}
	dec.Deployment, dec.Target = d.ID, d.From
	return dec
}

// decideAbort: before the cutover the deployment just stops; after it,
// abort is a rollback; once retention is over it is too late.
func decideAbort(v View, req api.AbortRequest) Decision {
	if d, ok := checkRevision(v, req.ExpectedRevision); !ok {
		return d
	}
	st := v.State
	d := st.pending()
	if d == nil {
		d = st.active()
	}
	if d == nil {
		return deny("no_deployment", "no deployment in progress")
	}
	switch {
	case d.Phase.BeforeCutover():
		dec := allow("deployment %s (model %s in %s) stops; %s never received client traffic", d.ID, d.Model, d.Pool, d.Pool)
		if _, w := canaryRoute(&st); w > 0 {
			dec = allow("deployment %s (model %s in %s) stops; its canary share of %d%% of new requests goes back to %s at once", d.ID, d.Model, d.Pool, w, d.From)
		}
		dec.Deployment = d.ID
		return dec
	case d.Phase == PhasePromoted:
		dec := decideRollback(v, api.RollbackRequest{Now: req.Now})
		if dec.Allowed {
			dec.Reason = fmt.Sprintf("deployment %s is live: aborting it is a rollback; %s", d.ID, dec.Reason)
		}
		return dec
	default:
		return deny("too_late", "deployment %s is %s: its retention ended at %s, so there is nothing to abort", d.ID, d.Phase, stamp(d.RetainUntil))
	}
}

// inPostPromotion reports whether d's post-promotion checks still run.
func inPostPromotion(d *Deployment, now time.Time) bool {
	return d.Phase == PhasePromoted && !d.PostPromotionUntil.IsZero() && now.Before(d.PostPromotionUntil)
}

// decideRetire: retire ends a promoted deployment's retention now; while
// its post-promotion checks run that needs force, which ends them too.
// During retirement it retries failed on_retire hooks (force gives up on
// them).
func decideRetire(v View, req api.RetireRequest) Decision {
	if d, ok := checkRevision(v, req.ExpectedRevision); !ok {
		return d
	}
	d := v.State.active()
	if d == nil || (d.Phase != PhasePromoted && d.Phase != PhaseRetiring) {
		return deny("nothing_to_retire", "no promoted deployment holds an old pool")
	}
	var dec Decision
	switch {
	case d.Phase == PhaseRetiring && req.Force:
		dec = allow("%s is marked retired without its failing on_retire hooks", d.From)
	case d.Phase == PhaseRetiring:
		dec = allow("the on_retire hooks of %s run again now", d.From)
	case inPostPromotion(d, v.Now) && !req.Force:
		return Decision{Code: "post_promotion_window", Force: true, Reason: fmt.Sprintf(
			"retire would end the post-promotion checks of deployment %s (until %s: a failing gate rolls back to %s automatically) together with the retention of %s; pass --force to end both now",
			d.ID, stamp(d.PostPromotionUntil), d.From, d.From)}
	case inPostPromotion(d, v.Now):
		dec = allow("ends the post-promotion checks of deployment %s (and their automatic rollback) and the retention of %s: it is drained and retired, and rollback is refused from then on", d.ID, d.From)
		dec.Forced = true
	default:
		dec = allow("ends the retention of %s now: it is drained and retired, and rollback is refused from then on", d.From)
	}
	dec.Deployment = d.ID
	return dec
}

// decideDeploy: one deployment at a time; a pool retained for rollback is
// taken only with force. What the request carries (model, replicas) is
// checked by Deploy.
func decideDeploy(v View, req api.DeployRequest) Decision {
	if d, ok := checkRevision(v, req.ExpectedRevision); !ok {
		return d
	}
	st := v.State
	target := v.other()
	if l := st.Launch; l != nil {
		return deny("launch_in_progress", "launch %s of %s through the agents (since %s) is still in progress; wait for it", l.ID, l.Model, stamp(l.Since))
	}
	if d := st.pending(); d != nil {
		return deny("deployment_in_progress", "deployment %s is pending (%s); abort it first", d.ID, d.Reason)
	}
	if d := st.active(); d != nil {
		switch {
		case d.Phase == PhasePromoted && !req.Force:
			what := ""
			if inPostPromotion(d, v.Now) {
				what = fmt.Sprintf(" (its post-promotion checks, with automatic rollback, run until %s)", stamp(d.PostPromotionUntil))
			}
			return Decision{Code: "pool_retained", Force: true, Reason: fmt.Sprintf(
				"pool %s is retained for rollback of deployment %s until %s%s; deploy again after that, run `cutover retire` to end the retention now, or pass --force",
				target, d.ID, stamp(d.RetainUntil), what)}
		case d.Phase == PhasePromoted:
			dec := allow("ends the retention of %s (deployment %s) now; the new version goes into %s once it is retired", target, d.ID, target)
			dec.Forced, dec.Deployment, dec.Target = true, d.ID, target
			return dec
		default:
			return deny("deployment_in_progress", "deployment %s (model %s into %s) is in progress: %s since %s; abort it or wait", d.ID, d.Model, d.Pool, d.Phase, stamp(d.PhaseSince))
		}
	}
	dec := allow("a new version goes into %s, the standby pool", target)
	dec.Target = target
	return dec
}

// actions is the status's answer for each action, asked without force
// and without a revision guard.
func actions(v View) map[string]api.Action {
	return map[string]api.Action{
		"promote":  decidePromote(v, api.PromoteRequest{}).api(),
		"rollback": decideRollback(v, api.RollbackRequest{}).api(),
		"abort":    decideAbort(v, api.AbortRequest{}).api(),
		"retire":   decideRetire(v, api.RetireRequest{}).api(),
		"deploy":   decideDeploy(v, api.DeployRequest{}).api(),
	}
}

// protection says what still protects the live pool.
func protection(v View) api.Protection {
	var p api.Protection
	var parts []string
	if rb := decideRollback(v, api.RollbackRequest{}); rb.Allowed {
		p.RollbackTo = rb.Target
	}
	// With retention_mode stop nothing is retained: the rollback's
	// refusal says why.
	if d := v.State.active(); d != nil && d.Phase == PhasePromoted && v.RetentionMode != RetentionStop {
		p.Deployment, p.RetainedPool, p.RetainedUntil = d.ID, d.From, d.RetainUntil
		if v.Now.Before(d.RetainUntil) {
			parts = append(parts, fmt.Sprintf("%s is retained for rollback until %s", d.From, stamp(d.RetainUntil)))
		} else {
			parts = append(parts, fmt.Sprintf("%s is still retained for rollback (its retention ended at %s; it is retired once %s is healthy enough)", d.From, stamp(d.RetainUntil), d.Pool))
		}
		if missing := missingReplicas(&v.State, d); missing > 0 {
			left := v.Pools[d.From].Replicas
			parts = append(parts, fmt.Sprintf("it is shrunk to %d of %d replicas (retention_mode shrink): a rollback first starts %d again, or switches at once with --now", left, left+missing, missing))
		} else if pv := v.Pools[d.From]; pv.Healthy == 0 {
			why := strings.Join(pv.Unhealthy, "; ")
			if why == "" {
				why = "no replicas"
			}
			parts = append(parts, fmt.Sprintf("but %s has no healthy replica now (%s): a rollback is refused until one passes its checks", d.From, why))
		}
		if inPostPromotion(d, v.Now) {
			p.AutoRollbackUntil = d.PostPromotionUntil
			parts = append(parts, fmt.Sprintf("post-promotion checks run until %s and roll back to %s automatically if a gate fails", stamp(d.PostPromotionUntil), d.From))
		}
	} else if cr, ok := decideCanaryRollback(v, api.RollbackRequest{}); ok && cr.Allowed {
		parts = append(parts, "rollback: "+cr.Reason)
	} else if p.RollbackTo != "" {
		parts = append(parts, fmt.Sprintf("rollback makes %s (model %s) live again", p.RollbackTo, v.Pools[p.RollbackTo].Model))
	}
	if len(parts) == 0 {
		why := decideRollback(v, api.RollbackRequest{}).Reason
		p.Summary = "nothing: " + why
		return p
	}
	p.Summary = strings.Join(parts, "; ")
	return p
}
