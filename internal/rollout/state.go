// Package rollout holds the control plane: the persisted state of which
// pool is live and of each deployment, and the transitions that change
// them. Every transition is written to the store (compare-and-swap on the
// revision) before it takes effect, and deadlines are stored as absolute
// times, so a restart resumes where the process stopped.
package rollout

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/validation"
)

// State is the document the controller persists at every transition.
type State struct {
	// Live is the pool that receives client traffic.
	Live string `json:"live"`
	// Previous is the pool that was live before the last switch.
	Previous string `json:"previous,omitempty"`
	// SwitchedAt is when Live last changed.
	SwitchedAt time.Time `json:"switched_at,omitzero"`
	// RolledBack is true when the last switch was a rollback (by hand, by
	// abort or automatic): rollback undoes the last switch, so a second
	// one is refused unless it names its target pool.
	RolledBack bool `json:"rolled_back,omitempty"`
	// Pools holds the pools a deployment or a retirement has set. A pool
	// absent here is as the configuration says.
	Pools map[string]PoolSpec `json:"pools,omitempty"`
	// Deployments are the latest deployments, oldest first.
	Deployments []*Deployment `json:"deployments,omitempty"`
	// NextID numbers deployments.
	NextID int64 `json:"next_id,omitempty"`
	// RunningHooks are the command hooks running now, with their process
	// groups (see RunningHook).
	RunningHooks []RunningHook `json:"running_hooks,omitempty"`
	// GuardRevision is the revision of the last commit that recorded a
	// history event. Commits without one (a hook's process group recorded
	// or cleared, gates stored) do not set it, so a switch guard
	// (expected_revision) taken from any revision since still holds.
	// 0 in a state written before it existed: the guard then needs the
	// exact revision.
	GuardRevision int64 `json:"guard_revision,omitempty"`
	// Cost is the GPU accounting (see cost.go).
	Cost CostLedger `json:"cost,omitzero"`
	// Launch is the launch in progress through the agents, nil without
	// one (see launch.go). Commits replace it, never change it in place.
	Launch *LaunchState `json:"launch,omitempty"`
	// Restores are the restores in progress through the agents (a shrunk
	// retained pool brought back to full size, see restore.go). Commits
	// replace the slice and its elements, never change them in place.
	Restores []RestoreState `json:"restores,omitempty"`
	// Orphans are replicas the controller started through the agents
	// that no pool holds any more and that must still be stopped (see
	// orphans.go).
	Orphans []LaunchedReplica `json:"orphans,omitempty"`
}

// PoolSpec is what a pool serves.
type PoolSpec struct {
	Model    string   `json:"model"`
	Replicas []string `json:"replicas"`
	// SetBy names the deployment that set this spec.
	SetBy string `json:"set_by,omitempty"`
	// APIKeyFile is the file holding the key the replicas want as
	// Authorization: Bearer KEY (vLLM's --api-key); the path only, never
	// the key. Empty means the configured pool's pools.<pool>.api_key_file.
	APIKeyFile string `json:"api_key_file,omitempty"`
	// Launched are the replicas the controller started through the
	// agents for this spec; retirement stops them.
	Launched []LaunchedReplica `json:"launched,omitempty"`
	// GPUsPerReplica is, for the configuration's spec, the GPUs each
	// replica not in Launched holds (pools.<pool>.gpus_per_replica), for
	// the GPU accounting; 0 in a deployment's spec (replicas given with
	// --replica count none).
	GPUsPerReplica int `json:"gpus_per_replica,omitempty"`
}

func (p PoolSpec) equal(q PoolSpec) bool {
	return p.Model == q.Model && slices.Equal(p.Replicas, q.Replicas) && p.APIKeyFile == q.APIKeyFile
}

// keepDeployments is how many deployments the state document keeps;
// older finished ones live on in the history. Deployments whose hooks
// have not run yet are kept beyond it, up to maxDeployments.
const keepDeployments = 20

// maxDeployments bounds the deployments the state document holds. When
// that many are kept for their pending hooks, new deployments are refused
// until the hooks have run (see hookBacklog).
const maxDeployments = 50

// Deployment is one new version's way through the lifecycle.
type Deployment struct {
	ID       string   `json:"id"`
	Pool     string   `json:"pool"`
	Model    string   `json:"model"`
	Replicas []string `json:"replicas"`
	// From is the pool that was live when the deployment was made, with
	// what it served: the pool retained for rollback after the promotion.
	From         string   `json:"from"`
	FromModel    string   `json:"from_model"`
	FromReplicas []string `json:"from_replicas"`
	// APIKeyFile is the deployment's key file for its replicas (see
	// PoolSpec.APIKeyFile); empty means the pool's configured one.
	APIKeyFile string `json:"api_key_file,omitempty"`
	// Launched are its replicas started through the agents (none when
	// the deployment named them); FromLaunched those of the old pool,
	// stopped at its retirement after the on_retire hooks.
	Launched     []LaunchedReplica `json:"launched,omitempty"`
	FromLaunched []LaunchedReplica `json:"from_launched,omitempty"`
	// Shrunk are the old pool's replicas that rollout.retention_mode
	// shrink stopped during the retention (a rollback starts as many
	// again first); ShrunkAt is when the shrink was done, zero before.
	Shrunk   []LaunchedReplica `json:"shrunk,omitempty"`
	ShrunkAt time.Time         `json:"shrunk_at,omitzero"`
	// Asleep are the old pool's replicas put to sleep for the retention
	// (rollout.retention_mode sleep), recorded by the gateway that sent
	// /sleep so that every gateway of a fleet shows them asleep.
	Asleep []string `json:"asleep,omitempty"`
	// RestoreLater is how many replicas a rollback with now left to
	// start again through the agents in the background, to bring the
	// shrunk pool, live again, back to full size; 0 once done.
	RestoreLater int `json:"restore_later,omitempty"`

	Phase      Phase     `json:"phase"`
	PhaseSince time.Time `json:"phase_since"`
	// Deadline is the absolute time at which the current phase times out
	// or moves on (progress deadline, auto-promotion, retention end, drain
	// end). Zero means none.
	Deadline time.Time `json:"deadline,omitzero"`
	// Reason explains the last transition.
	Reason string `json:"reason,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	ReadyAt     time.Time `json:"ready_at,omitzero"`
	PromotedAt  time.Time `json:"promoted_at,omitzero"`
	RetainUntil time.Time `json:"retain_until,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`

	// PendingHooks are events whose hooks must still run. They are stored
	// with the transition, so a hook interrupted by a crash runs again.
	PendingHooks []string `json:"pending_hooks,omitempty"`
	// PendingRunIDs are the run ids (hook.Payload.RunID) of PendingHooks,
	// one each, fixed when the event was pended.
	PendingRunIDs []string `json:"pending_run_ids,omitempty"`
	// Hooks are the latest hook outcomes, oldest first.
	Hooks []hook.Outcome `json:"hooks,omitempty"`

	// Gates are the validation gates' final values (the live values are
	// in memory while validating).
	Gates []api.Gate `json:"gates,omitempty"`
	// Baseline is the live pool measured during validation; the
	// post-promotion window holds the new pool to it.
	Baseline *validation.Stats `json:"baseline,omitempty"`
	// PostPromotionUntil ends the post-promotion window (zero: none).
	PostPromotionUntil time.Time `json:"post_promotion_until,omitzero"`

	// Canary is the step in progress with the canary strategy (kept,
	// with its weight, while ready after the last step). Zero otherwise.
	Canary CanaryState `json:"canary,omitzero"`

	RetireAttempts    int       `json:"retire_attempts,omitempty"`
	NextRetireAttempt time.Time `json:"next_retire_attempt,omitzero"`
	RetireError       string    `json:"retire_error,omitempty"`

	// GPUSeconds are the GPU-seconds every pool held, by "pool/state"
	// (see cost.go), while this deployment was in progress.
	GPUSeconds map[string]float64 `json:"gpu_seconds,omitempty"`
}

// keepHookOutcomes bounds Deployment.Hooks.
const keepHookOutcomes = 20

func (d *Deployment) addOutcome(o hook.Outcome) {
	d.Hooks = append(d.Hooks, o)
	if n := len(d.Hooks) - keepHookOutcomes; n > 0 {
		d.Hooks = slices.Delete(d.Hooks, 0, n)
	}
}

// enter moves d to phase p at now, with its reason and deadline.
func (d *Deployment) enter(p Phase, now time.Time, reason string, deadline time.Time) {
	d.Phase, d.PhaseSince, d.Reason, d.Deadline = p, now, reason, deadline
}

func (d *Deployment) clone() *Deployment {
	c := *d
	c.Replicas = slices.Clone(d.Replicas)
	c.FromReplicas = slices.Clone(d.FromReplicas)
	c.Asleep = slices.Clone(d.Asleep)
	c.PendingHooks = slices.Clone(d.PendingHooks)
	c.PendingRunIDs = slices.Clone(d.PendingRunIDs)
	c.Hooks = slices.Clone(d.Hooks)
	c.Gates = slices.Clone(d.Gates)
	if d.Baseline != nil {
		b := *d.Baseline
		c.Baseline = &b
	}
	return &c
}

func (s State) clone() State {
	c := s
	if s.Pools != nil {
		c.Pools = make(map[string]PoolSpec, len(s.Pools))
		for k, v := range s.Pools {
			v.Replicas = slices.Clone(v.Replicas)
			c.Pools[k] = v
		}
	}
	c.RunningHooks = slices.Clone(s.RunningHooks)
	c.Deployments = make([]*Deployment, len(s.Deployments))
	for i, d := range s.Deployments {
		c.Deployments[i] = d.clone()
	}
	return c
}

// active returns the deployment that is not finished yet, the newest
// first: there is at most one, plus a pending one waiting for it.
func (s *State) active() *Deployment {
	for i := len(s.Deployments) - 1; i >= 0; i-- {
		if d := s.Deployments[i]; !d.Phase.Terminal() && d.Phase != PhasePending {
			return d
		}
	}
	return nil
}

// pending returns the deployment waiting for an earlier one to retire.
func (s *State) pending() *Deployment {
	for _, d := range s.Deployments {
		if d.Phase == PhasePending {
			return d
		}
	}
	return nil
}

// latest returns the newest deployment, or nil.
func (s *State) latest() *Deployment {
	if len(s.Deployments) == 0 {
		return nil
	}
	return s.Deployments[len(s.Deployments)-1]
}

// find returns the deployment with id, or nil.
func (s *State) find(id string) *Deployment {
	for _, d := range s.Deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *State) add(d *Deployment) {
	s.Deployments = append(s.Deployments, d)
	s.trim()
}

// trim drops the oldest deployments beyond keepDeployments, but only
// finished ones whose hooks have all run: a hook that must still run is
// never forgotten.
func (s *State) trim() {
	excess := len(s.Deployments) - keepDeployments
	s.Deployments = slices.DeleteFunc(s.Deployments, func(d *Deployment) bool {
		if excess > 0 && d.Phase.Terminal() && len(d.PendingHooks) == 0 {
			excess--
			return true
		}
		return false
	})
}

// hookBacklog refuses a new deployment when the state holds
// maxDeployments that cannot be trimmed yet because of pending hooks.
func (s *State) hookBacklog() *Refusal {
	var waiting []*Deployment
	for _, d := range s.Deployments {
		if len(d.PendingHooks) > 0 {
			waiting = append(waiting, d)
		}
	}
	if len(s.Deployments) < maxDeployments || len(waiting) == 0 {
		return nil
	}
	old := waiting[0]
	return refuse("hooks_backlog", "%d deployments still have hooks to run (the oldest, %s, waits for %s); new deployments are refused until they have run, so that none is forgotten: check the hooks in `cutover status` and `cutover history` (a hanging or very slow hook?)",
		len(waiting), old.ID, strings.Join(old.PendingHooks, ", "))
}

// event is one history entry as stored.
type event struct {
	Time       time.Time     `json:"time"`
	Revision   int64         `json:"revision"`
	Actor      string        `json:"actor"`
	Action     string        `json:"action"`
	Deployment string        `json:"deployment,omitempty"`
	From       string        `json:"from,omitempty"`
	To         string        `json:"to,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Hook       *hook.Outcome `json:"hook,omitempty"`
	// Forced: force overrode a refusal.
	Forced bool `json:"forced,omitempty"`
	// Cost is the deployment's GPU-seconds so far, on its phase changes.
	Cost *api.Cost `json:"cost,omitempty"`
}

func decodeState(b []byte) (State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("decode persisted state: %w", err)
	}
	return s, nil
}

// usableState decodes a persisted state document and checks that it names
// one of pools live: what a start needs of it. Start, `cutover state check`
// and `cutover state import` decide with it alike (CheckDocument).
func usableState(b []byte, pools func(string) bool) (State, error) {
	s, err := decodeState(b)
	if err != nil {
		return State{}, err
	}
	if !pools(s.Live) {
		return State{}, fmt.Errorf("the state names live pool %q, not blue or green", s.Live)
	}
	for _, d := range s.Deployments {
		// Valid JSON is not enough: a state the controller does not
		// understand would be run, then written back over the backup.
		switch {
		case d == nil:
			return State{}, fmt.Errorf("the state holds an empty deployment")
		case !d.Phase.known():
			return State{}, fmt.Errorf("deployment %s is in phase %q, which no cutover writes", d.ID, d.Phase)
		}
	}
	return s, nil
}

// CheckDocument reports why a persisted state document cannot be started
// from, nil when it can: it must decode as the state and name pools[i]
// live.
func CheckDocument(b []byte, pools []string) error {
	_, err := usableState(b, func(name string) bool { return slices.Contains(pools, name) })
	return err
}
