package rollout

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// GPU states: what a pool's GPUs are doing, for the cost accounting
// (api.GPUUsage.State, the metrics' state label).
const (
	// GPULive: the live pool's replicas.
	GPULive = "live"
	// GPUCandidate: a deployment's new pool before its promotion (both
	// pools running: the overlap of blue-green).
	GPUCandidate = "candidate"
	// GPURetainedAwake: the old pool during its retention, awake.
	GPURetainedAwake = "retained_awake"
	// GPURetainedAsleep: the old pool during its retention, asleep
	// (retention_mode: sleep): GPUs held, weights offloaded.
	GPURetainedAsleep = "retained_asleep"
	// GPUIdle: the pool that is not live outside any deployment: the
	// configuration's standby, or the replicas of a deployment that
	// failed, was aborted or rolled back (the next deploy stops those).
	GPUIdle = "idle"
)

// GPUStates lists every GPU state, for complete metric sets.
var GPUStates = []string{GPULive, GPUCandidate, GPURetainedAwake, GPURetainedAsleep, GPUIdle}

// CostLedger is the persisted GPU accounting: the GPUs each pool held in
// each state since At, and the GPU-seconds held so far. Every commit
// first adds (commit time - At) × GPUs for what was held, then records
// what the new state holds, so the totals survive a restart (even kill
// -9): the replicas kept their GPUs while the controller was down, and
// the first commit after the restart adds that time.
type CostLedger struct {
	// At is when Held was recorded (the accounting's last step).
	At time.Time `json:"at,omitzero"`
	// Since is when the accounting began.
	Since time.Time `json:"since,omitzero"`
	// Held is what the pools held at At.
	Held []HeldGPUs `json:"held,omitempty"`
	// Deployment is the deployment in progress at At: its GPUSeconds
	// take the time until the next step too.
	Deployment string `json:"deployment,omitempty"`
	// Totals are the GPU-seconds held so far, by "pool/state".
	Totals map[string]float64 `json:"totals,omitempty"`
}

// HeldGPUs is how many GPUs a pool's replicas hold in one state.
type HeldGPUs struct {
	Pool  string `json:"pool"`
	State string `json:"state"`
	GPUs  int    `json:"gpus"`
}

// costKey is the key of a pool and state in the totals.
func costKey(pool, state string) string { return pool + "/" + state }

// accrue adds the GPU-seconds held since s.Cost.At until now to the
// totals and to the deployment then in progress. It never writes into
// maps it shares with another copy of the state (copy on write), so a
// clone of the state may be accrued for a view.
func accrue(s *State, now time.Time) {
	l := &s.Cost
	if l.At.IsZero() || !now.After(l.At) {
		if l.At.IsZero() {
			l.At, l.Since = now, now
		}
		return
	}
	dt := now.Sub(l.At).Seconds()
	var d *Deployment
	if l.Deployment != "" {
		if d = s.find(l.Deployment); d != nil {
			d.GPUSeconds = maps.Clone(d.GPUSeconds)
			if d.GPUSeconds == nil {
				d.GPUSeconds = map[string]float64{}
			}
		}
	}
	l.Totals = maps.Clone(l.Totals)
	for _, h := range l.Held {
		if h.GPUs <= 0 {
			continue
		}
		if l.Totals == nil {
			l.Totals = map[string]float64{}
		}
		k := costKey(h.Pool, h.State)
		l.Totals[k] += dt * float64(h.GPUs)
		if d != nil {
			d.GPUSeconds[k] += dt * float64(h.GPUs)
		}
	}
	l.At = now
}

// holding is what st's pools hold now: the GPUs of each pool's
// replicas (a launched one's LaunchedReplica.GPUs, none once its agent
// lists it exited; one no agent started its spec's GPUsPerReplica:
// configured, else none) by the pool's state, asleep naming the retained replicas asleep as
// "pool URL"; and the deployment in progress.
func (c *Controller) holding(st *State, asleep map[string]bool) ([]HeldGPUs, string) {
	a := st.active()
	if a == nil {
		a = st.pending()
	}
	agents := c.agentViews()
	byKey := map[[2]string]int{}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Pools)) {
		spec := c.specOf(*st, name)
		state := GPUIdle
		switch {
		case name == st.Live:
			state = GPULive
		case a != nil && a.Pool == name && a.Phase.BeforeCutover():
			state = GPUCandidate
		case a != nil && a.From == name && (a.Phase == PhasePromoted || a.Phase == PhaseRetiring):
			state = GPURetainedAwake
		}
		gpus := map[string]int{}
		for _, u := range spec.Replicas {
			gpus[u] = spec.GPUsPerReplica
		}
		for _, r := range spec.Launched {
			gpus[r.URL] = r.GPUs
			if gone(agents, r) {
				gpus[r.URL] = 0
			}
		}
		for _, u := range slices.Sorted(maps.Keys(gpus)) {
			s := state
			if s == GPURetainedAwake && asleep[name+" "+u] {
				s = GPURetainedAsleep
			}
			byKey[[2]string{name, s}] += gpus[u]
		}
	}
	for _, r := range st.Orphans { // no pool holds them, not stopped yet
		if !gone(agents, r) {
			byKey[[2]string{standby(*st), GPUIdle}] += r.GPUs
		}
	}
	if l := st.Launch; l != nil { // replicas started, not in a pool yet
		for _, sl := range l.Slots {
			if sl.ID != "" && sl.State != SlotFailed {
				byKey[[2]string{standby(*st), GPUCandidate}] += sl.GPUs
			}
		}
	}
	for _, rs := range st.Restores { // replicas started, not in their pool yet
		s := GPURetainedAwake
		if rs.Pool == st.Live {
			s = GPULive
		}
		for _, sl := range rs.Slots {
			if sl.ID != "" && sl.State != SlotFailed {
				byKey[[2]string{rs.Pool, s}] += sl.GPUs
			}
		}
	}
	var held []HeldGPUs
	for _, k := range slices.SortedFunc(maps.Keys(byKey), func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) }) {
		if byKey[k] > 0 {
			held = append(held, HeldGPUs{Pool: k[0], State: k[1], GPUs: byKey[k]})
		}
	}
	id := ""
	if a != nil {
		id = a.ID
	}
	return held, id
}

// gone reports whether r's agent answers and lists r exited, or no
// longer lists it: its GPUs are free (a replica stopped before its pool
// changed, such as the standby's before a new launch).
func gone(agents map[string]api.AgentStatus, r LaunchedReplica) bool {
	a, ok := agents[r.Agent]
	if !ok || !a.Up {
		return false // out of sight: still counted
	}
	i := slices.IndexFunc(a.Replicas, func(ar api.AgentReplica) bool { return ar.ID == r.ID })
	return i < 0 || a.Replicas[i].State == "exited"
}

// account steps the ledger of next, a commit's new state, to now: the
// time since the last step is added for what was held, and what next
// holds is recorded.
func (c *Controller) account(next *State, now time.Time) {
	accrue(next, now)
	next.Cost.Held, next.Cost.Deployment = c.holding(next, c.sleep.asleepSet(next))
}

// recordHolding commits the ledger when what the pools hold changed
// without a transition (the retained pool put to sleep, its replicas
// woken): a commit without a history event. Reconcile calls it.
func (c *Controller) recordHolding(ctx context.Context) {
	st, _, _ := c.snapshot()
	held, id := c.holding(&st, c.sleep.asleepSet(&st))
	if slices.Equal(held, st.Cost.Held) && id == st.Cost.Deployment {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if err := c.commit(ctx, "controller", func(*State) ([]event, error) { return nil, nil }); err != nil && ctx.Err() == nil {
		c.log.Warn("record the GPUs held", "error", err)
	}
}

// costView returns the ledger of st accrued to now, without storing it.
func costView(st State, now time.Time) State {
	st = st.clone()
	accrue(&st, now)
	return st
}

// apiCost is the ledger's totals and what is held now, for the status.
func apiCost(l CostLedger) *api.Cost {
	if l.At.IsZero() {
		return nil
	}
	held := map[string]int{}
	for _, h := range l.Held {
		held[costKey(h.Pool, h.State)] = h.GPUs
	}
	keys := slices.Sorted(maps.Keys(l.Totals))
	for k := range held {
		if _, ok := l.Totals[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := &api.Cost{Since: l.Since, Usage: []api.GPUUsage{}}
	for _, k := range keys {
		out.Usage = append(out.Usage, usage(k, held[k], l.Totals[k]))
	}
	out.OverlapGPUSeconds = overlap(l.Totals)
	return out
}

// deploymentCost is d's GPU-seconds by pool and state.
func deploymentCost(d *Deployment) *api.Cost {
	if len(d.GPUSeconds) == 0 {
		return nil
	}
	out := &api.Cost{Usage: []api.GPUUsage{}}
	for _, k := range slices.Sorted(maps.Keys(d.GPUSeconds)) {
		out.Usage = append(out.Usage, usage(k, 0, d.GPUSeconds[k]))
	}
	out.OverlapGPUSeconds = overlap(d.GPUSeconds)
	return out
}

func usage(key string, gpus int, secs float64) api.GPUUsage {
	pool, state, _ := strings.Cut(key, "/")
	return api.GPUUsage{Pool: pool, State: state, GPUs: gpus, GPUSeconds: secs}
}

// overlap is the GPU-seconds of every state but live: what holding a
// second pool cost.
func overlap(totals map[string]float64) float64 {
	var sum float64
	for _, k := range slices.Sorted(maps.Keys(totals)) {
		if _, state, _ := strings.Cut(k, "/"); state != GPULive {
			sum += totals[k]
		}
	}
	return sum
}
