package rollout

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/store"
)

// Status returns the current state with the pools' live health and the
// current (else latest) deployment.
func (c *Controller) Status() api.Status {
	st, rev, pools := c.snapshot()
	st = costView(st, c.now().UTC())
	asleep := c.sleep.asleepSet(&st)
	s := api.Status{Live: st.Live, Previous: st.Previous, Revision: rev, ModelName: c.opts.ModelName, SwitchedAt: st.SwitchedAt, Pools: map[string]api.Pool{}}
	for name, p := range pools {
		ap := api.Pool{Name: name, Model: p.Model, Live: name == st.Live, Role: string(roleOf(&st, name)), InFlight: p.InFlight(), Requests: p.Requests(), HealthyReplicas: p.HealthyCount(), Replicas: []api.Replica{}}
		for _, r := range p.Replicas {
			h := r.Health()
			ap.Replicas = append(ap.Replicas, api.Replica{URL: r.Name, Healthy: h.Healthy, InFlight: r.InFlight(), Requests: r.Requests(), LastError: h.LastError, CheckedAt: h.CheckedAt, ChangedAt: h.ChangedAt, Asleep: asleep[name+" "+r.Name]})
			if e := r.EngineLoad(); e != nil {
				ap.Replicas[len(ap.Replicas)-1].Engine = &api.EngineMetrics{Waiting: e.Waiting, Running: e.Running,
					KVCacheUsage: e.KV, PrefixCacheHitRate: e.PrefixHitRate(), Batch: e.Slots, BatchKnown: e.Queued, ScrapedAt: e.At}
			}
		}
		if c.opts.GatewayQueue != nil {
			if q, ok := c.opts.GatewayQueue(name); ok {
				ap.GatewayQueue = &q
			}
		}
		s.Pools[name] = ap
	}
	d := st.pending()
	if a := st.active(); a != nil {
		d = a
	}
	if d == nil {
		d = st.latest()
	}
	if d != nil {
		v := c.apiDeployment(d, c.noteFor(d.ID))
		s.Deployment = &v
	}
	var agents map[string]api.AgentStatus
	if c.opts.Agents != nil {
		s.Agents = c.opts.Agents()
		agents = agentsByName(s.Agents)
	}
	if c.opts.Shadow != nil {
		s.Shadow = c.opts.Shadow()
	}
	v := viewOf(st, rev, pools, agents, c.now().UTC())
	v.RetentionMode = c.opts.Settings.RetentionMode
	s.Protection, s.Actions = protection(v), actions(v)
	s.Weights = canaryWeights(&st)
	s.Launching = c.launch.note()
	c.mu.Lock()
	if e := c.saveErr; e != nil {
		s.SaveError = &api.SaveError{Error: e.Error, Since: e.Since}
	}
	c.mu.Unlock()
	if b, ok := c.opts.Store.(interface{ BackupLag() *store.BackupLag }); ok {
		if l := b.BackupLag(); l != nil {
			s.BackupError = &api.BackupError{Error: l.Error, Since: l.Since.UTC(), Revision: l.Revision}
		}
	}
	s.Cost = apiCost(st.Cost)
	for _, r := range st.Orphans {
		s.Orphans = append(s.Orphans, api.LaunchReplica{Agent: r.Agent, ID: r.ID, URL: r.URL, GPUs: r.GPUs, State: "stopping"})
	}
	if l := st.Launch; l != nil {
		s.Launch = &api.Launch{Model: l.Model, Since: l.Since, Replicas: apiSlots(l.Slots)}
	}
	for _, r := range st.Restores {
		s.Restores = append(s.Restores, api.Restore{Pool: r.Pool, Deployment: r.Deployment, Model: r.Model, Since: r.Since,
			Wanted: r.N, Background: r.Later, Replicas: apiSlots(r.Slots)})
	}
	return s
}

// apiSlots is the API's view of a launch's or restore's slots.
func apiSlots(slots []LaunchSlot) []api.LaunchReplica {
	out := []api.LaunchReplica{}
	for _, sl := range slots {
		out = append(out, api.LaunchReplica{Agent: sl.Agent, ID: sl.ID, URL: sl.URL, GPUs: sl.GPUs, State: sl.State, Error: sl.Error})
	}
	return out
}

func (c *Controller) noteFor(id string) *string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.notes[id]; ok {
		return &n
	}
	return nil
}

// Deployments lists the deployments the state holds, newest first.
func (c *Controller) Deployments() []api.Deployment {
	st, _, _ := c.snapshot()
	st = costView(st, c.now().UTC())
	out := make([]api.Deployment, 0, len(st.Deployments))
	for _, d := range slices.Backward(st.Deployments) {
		out = append(out, c.apiDeployment(d, c.noteFor(d.ID)))
	}
	return out
}

// Deployment returns one deployment by id.
func (c *Controller) Deployment(id string) (api.Deployment, error) {
	st, _, _ := c.snapshot()
	st = costView(st, c.now().UTC())
	d := st.find(id)
	if d == nil {
		return api.Deployment{}, &Refusal{Code: "not_found", Reason: fmt.Sprintf("no deployment %q (the state keeps the latest %d; older ones are in the history)", id, keepDeployments), Status: 404}
	}
	return c.apiDeployment(d, c.noteFor(id)), nil
}

func (c *Controller) deploymentView(id string) api.Deployment {
	d, _ := c.Deployment(id)
	return d
}

func (c *Controller) apiDeployment(d *Deployment, note *string) api.Deployment {
	v := api.Deployment{
		ID: d.ID, Pool: d.Pool, Model: d.Model, Replicas: slices.Clone(d.Replicas), From: d.From, FromModel: d.FromModel,
		Phase: string(d.Phase), PhaseSince: d.PhaseSince, Deadline: d.Deadline, Reason: d.Reason,
		CreatedAt: d.CreatedAt, CreatedBy: d.CreatedBy, ReadyAt: d.ReadyAt, PromotedAt: d.PromotedAt,
		RetainUntil: d.RetainUntil, RetiredAt: d.RetiredAt, PendingHooks: slices.Clone(d.PendingHooks),
		RetireAttempts: d.RetireAttempts, NextRetireAttempt: d.NextRetireAttempt, RetireError: d.RetireError,
	}
	if !d.Deadline.IsZero() {
		switch d.Phase {
		case PhaseReady:
			v.DeadlineKind = "auto_promote"
		case PhasePromoted:
			v.DeadlineKind = "retention"
		case PhaseValidating:
			v.DeadlineKind = "validation"
		case PhaseCanary:
			v.DeadlineKind = "canary_step"
		case PhaseRetiring:
			v.DeadlineKind = "drain"
		default:
			v.DeadlineKind = "progress"
		}
	}
	if note != nil && !d.Phase.Terminal() {
		v.Waiting = *note
	}
	for _, o := range d.Hooks {
		v.Hooks = append(v.Hooks, apiOutcome(o))
	}
	v.Gates = c.gatesFor(d.ID)
	if v.Gates == nil {
		v.Gates = slices.Clone(d.Gates)
	}
	v.PostPromotionUntil = d.PostPromotionUntil
	v.Canary = c.apiCanary(d)
	v.Cost = deploymentCost(d)
	return v
}

func apiOutcome(o hook.Outcome) api.HookOutcome {
	return api.HookOutcome(o)
}

// History returns the latest limit events, oldest first.
func (c *Controller) History(ctx context.Context, limit int) ([]api.Event, error) {
	raw, err := c.opts.Store.History(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Event, 0, len(raw))
	for _, b := range raw {
		var e event
		if err := json.Unmarshal(b, &e); err != nil {
			// One damaged entry must not hide the others (the dashboard,
			// `cutover history`): it is shown as what it is.
			out = append(out, damagedEvent(b, err))
			continue
		}
		ae := api.Event{Time: e.Time, Revision: e.Revision, Actor: e.Actor, Action: e.Action, Deployment: e.Deployment, From: e.From, To: e.To, Reason: e.Reason, Forced: e.Forced, Cost: e.Cost}
		if e.Hook != nil {
			h := apiOutcome(*e.Hook)
			ae.Hook = &h
		}
		out = append(out, ae)
	}
	return out, nil
}

// damagedEvent is a history entry that does not decode as an event (err):
// one that is not JSON is shown as "damaged", as `cutover state check`
// counts it; one that is JSON with a field of the wrong type (a byte off
// in its time, say) keeps the fields that still read, with a note.
func damagedEvent(b []byte, err error) api.Event {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return api.Event{Action: "damaged", Actor: "store",
			Reason: fmt.Sprintf("this history entry is not JSON (%d bytes: %v); `cutover state check` counts such entries", len(b), err)}
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(m[k], &v)
		return v
	}
	var rev int64
	_ = json.Unmarshal(m["revision"], &rev)
	var at time.Time
	_ = json.Unmarshal(m["time"], &at)
	return api.Event{Time: at, Revision: rev, Actor: str("actor"), Action: cmp.Or(str("action"), "damaged"), Deployment: str("deployment"),
		From: str("from"), To: str("to"), Reason: strings.TrimSpace(str("reason") + fmt.Sprintf(" (this history entry is partly damaged: %v)", err))}
}
