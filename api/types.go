// Package api holds the admin API's wire types and a Go client for it.
// The cutover CLI talks to a running gateway only through this package, so
// anything the CLI does, a Go program can do too.
package api

import "time"

// Status is the answer to GET /api/v1/status.
type Status struct {
	// Live is the pool receiving client traffic: blue or green.
	Live string `json:"live"`
	// Previous is the pool that was live before the last switch, "" if
	// there was none. Rollback returns traffic to it.
	Previous string `json:"previous,omitempty"`
	// Revision counts state changes; every switch increments it.
	Revision int64 `json:"revision"`
	// ModelName is the client-facing model name, "" when not set.
	ModelName string `json:"model_name,omitempty"`
	// SwitchedAt is when the live pool last changed (zero if never).
	SwitchedAt time.Time `json:"switched_at,omitzero"`
	// Pools holds blue and green by name.
	Pools map[string]Pool `json:"pools"`
	// Deployment is the deployment in progress, else the latest one, else
	// nil.
	Deployment *Deployment `json:"deployment,omitempty"`
	// Protection says what still protects the live pool: a pool that
	// rollback would make live again, the retention of a deployment's old
	// pool and the post-promotion checks with their automatic rollback.
	Protection Protection `json:"protection"`
	// Actions says, for promote, rollback, abort, retire and deploy, whether
	// the gateway would do it now (asked without force and without a
	// revision guard) or why it refuses. The real action decides with the
	// same code, so what is allowed here is refused only when the state
	// changes first or a check made at the time fails (a fresh probe of the
	// target pool, a before_promote hook).
	Actions map[string]Action `json:"actions"`
	// Fleet describes the gateways sharing this state in etcd; nil for a
	// single gateway (bbolt).
	Fleet *Fleet `json:"fleet,omitempty"`
	// Weights is each pool's share of new requests in percent during a
	// canary, such as {"blue": 95, "green": 5}; absent outside one.
	Weights map[string]int `json:"weights,omitempty"`
	// Launching says how far a `deploy` without replicas is in starting
	// them through the agents, such as "launching replicas of m-2 through
	// the agents since 2026-01-02T15:04:05Z: 1 of 2 running"; absent
	// otherwise.
	Launching string `json:"launching,omitempty"`
	// Cost is the GPU accounting: the GPUs each pool holds now, by
	// state, and the GPU-seconds held since the accounting began; nil
	// before the first transition that recorded it.
	Cost *Cost `json:"cost,omitempty"`
	// Agents are the configured agents as the controller last saw them;
	// absent without agents.
	Agents []AgentStatus `json:"agents,omitempty"`
	// Shadow counts this gateway's shadow copies since it started; absent
	// when validation.shadow.percent is 0.
	Shadow *ShadowStatus `json:"shadow,omitempty"`
	// Launch is the launch in progress (a deploy without replicas
	// starting them through the agents), replica by replica; nil
	// otherwise.
	Launch *Launch `json:"launch,omitempty"`
	// Orphans are replicas the controller started through the agents
	// that no pool holds any more and that it has not managed to stop
	// yet (their agent did not answer): it retries with backoff. State
	// is "stopping".
	Orphans []LaunchReplica `json:"orphans,omitempty"`
	// SaveError is set while the controller cannot write the state (a
	// full or read-only state_dir): the last failed write of one of its
	// own steps (a phase change, a hook's outcome) and since when they
	// fail. It retries them until a write of a transition succeeds (that
	// clears it);
	// admin calls that cannot be written are refused with the error. Nil
	// otherwise.
	SaveError *SaveError `json:"save_error,omitempty"`
	// BackupError is set while the state file's backup (bbolt's
	// state_dir/cutover.db.bak) cannot be refreshed: restoring it then
	// would lose the transitions after its revision. Nil otherwise.
	BackupError *BackupError `json:"backup_error,omitempty"`
	// Restores are the restores in progress (retention_mode shrink): the
	// replicas started through the agents to bring a shrunk pool back to
	// full size, replica by replica, oldest first; absent when none is.
	Restores []Restore `json:"restores,omitempty"`
}

// AgentStatus is one agent as the controller sees it. The controller
// asks every agent for its replicas periodically, backing off while it
// does not answer.
type AgentStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Up is true when the agent's last answer came after its last failure.
	Up bool `json:"up"`
	// Since is when Up last changed (or the first check).
	Since time.Time `json:"since,omitzero"`
	// CheckedAt is the last check; NextCheckAt the next (backing off
	// while down).
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	NextCheckAt time.Time `json:"next_check_at,omitzero"`
	// LastError is the last failed check's error ("" when none yet).
	LastError string `json:"last_error,omitempty"`
	// GPUs and FreeGPUs are the agent's ledger at the last answer.
	GPUs     int `json:"gpus"`
	FreeGPUs int `json:"free_gpus"`
	// Replicas are its replicas at the last answer.
	Replicas []AgentReplica `json:"replicas,omitempty"`
}

// AgentReplica is one replica as its agent listed it.
type AgentReplica struct {
	ID    string `json:"id"`
	Model string `json:"model"`
	// State is starting, running, sleeping, stopping or exited.
	State string `json:"state"`
	GPUs  []int  `json:"gpus"`
	// URL is where the gateway reaches it.
	URL string `json:"url"`
}

// Launch is a launch in progress, persisted: a restarted controller
// carries it on.
type Launch struct {
	Model string    `json:"model"`
	Since time.Time `json:"since"`
	// Replicas are the replicas asked for, each with its agent and state:
	// asked (the agent was asked), started (it answered with an id),
	// ready (it runs) or failed.
	Replicas []LaunchReplica `json:"replicas"`
}

// Restore is a restore in progress, persisted like a launch: a
// restarted controller carries it on.
type Restore struct {
	// Pool is the pool the replicas join and Deployment the deployment
	// whose rollback (or shrunk retention) it is for.
	Pool       string    `json:"pool"`
	Deployment string    `json:"deployment"`
	Model      string    `json:"model"`
	Since      time.Time `json:"since"`
	// Wanted is how many replicas it starts.
	Wanted int `json:"wanted"`
	// Background is true for the restore after a rollback with now (the
	// replicas join the live pool), false for the one a rollback waits
	// for.
	Background bool `json:"background,omitempty"`
	// Replicas are those asked for so far, with their state as in
	// Launch.Replicas; empty before the first agent is asked.
	Replicas []LaunchReplica `json:"replicas"`
}

// LaunchReplica is one replica of a launch.
type LaunchReplica struct {
	Agent string `json:"agent"`
	ID    string `json:"id,omitempty"`
	URL   string `json:"url,omitempty"`
	GPUs  int    `json:"gpus,omitempty"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// Cost is GPU accounting by pool and state. Replicas started through the
// agents count the GPUs their agent gave them; the configuration's count
// pools.<pool>.gpus_per_replica each (default none); replicas given with
// deploy --replica count none.
type Cost struct {
	// Since is when the accounting began (absent on a deployment: its
	// own accounting runs from its creation to its end).
	Since time.Time `json:"since,omitzero"`
	// Usage lists each pool and state with GPUs held now (0 on a
	// deployment) and the GPU-seconds held so far.
	Usage []GPUUsage `json:"usage"`
	// OverlapGPUSeconds is the sum of every state but live: the cost of
	// holding a second pool (candidate, retained awake or asleep, idle).
	OverlapGPUSeconds float64 `json:"overlap_gpu_seconds"`
}

// Of returns the usage of pool in state, zero when c (nil too) has none.
func (c *Cost) Of(pool, state string) GPUUsage {
	if c == nil {
		return GPUUsage{}
	}
	for _, u := range c.Usage {
		if u.Pool == pool && u.State == state {
			return u
		}
	}
	return GPUUsage{}
}

// GPUUsage is what one pool holds in one state.
type GPUUsage struct {
	Pool string `json:"pool"`
	// State is live, candidate (a deployment's new pool before its
	// promotion), retained_awake, retained_asleep (the old pool during
	// its retention) or idle (the pool that is not live outside any
	// deployment: the configuration's standby, or a failed, aborted or
	// rolled-back deployment's replicas until the next deploy stops them).
	State      string  `json:"state"`
	GPUs       int     `json:"gpus"`
	GPUSeconds float64 `json:"gpu_seconds"`
}

// Fleet is the set of gateways sharing one state in etcd.
type Fleet struct {
	// Leader is the name of the gateway running the controller duties
	// (deployment steps, timers, hooks, retirement); "" while none is
	// elected or etcd is unreachable.
	Leader string `json:"leader"`
	// Self is the name of the gateway that answered.
	Self string `json:"self"`
	// Members are the gateways alive in the fleet (their etcd lease holds),
	// by name.
	Members []FleetMember `json:"members"`
	// Store is the state store's health as this gateway sees it.
	Store StoreHealth `json:"store"`
	// Config is the digest of this gateway's settings that every gateway
	// of the fleet must share (see FleetMember.Config).
	Config string `json:"config,omitempty"`
}

// FleetMember is one gateway of the fleet.
type FleetMember struct {
	// Name is the gateway's configured name.
	Name string `json:"name"`
	// Admin is its admin API address.
	Admin string `json:"admin"`
	// Revision is the state revision it has applied.
	Revision int64 `json:"revision"`
	// LastSeen is when it last reported.
	LastSeen time.Time `json:"last_seen"`
	// Config is a digest of the settings of its configuration file that
	// every gateway of the fleet must share (model_name, each pool's model
	// and replicas, rollout.strategy, rollout.retention_mode), as loaded
	// at its start or last reload. A member whose Config differs from
	// Fleet.Config serves a pool no deployment owns from other replicas or
	// under another model id. Empty from a gateway that does not publish
	// one.
	Config string `json:"config,omitempty"`
	// InFlight is its requests in flight by pool as it last reported
	// (every third of etcd.session_ttl): the leader's retirement of a pool
	// waits for them too.
	InFlight map[string]int `json:"in_flight,omitempty"`
}

// BackupError is a backup of the state that failed (Status.BackupError).
type BackupError struct {
	// Error is the last failed backup's error.
	Error string `json:"error"`
	// Since is when backups began to fail.
	Since time.Time `json:"since"`
	// Revision is the revision the backup file holds (0: there is none).
	Revision int64 `json:"revision"`
}

// SaveError is a state write that failed (Status.SaveError).
type SaveError struct {
	// Error is the last failed write's error.
	Error string `json:"error"`
	// Since is when writes began to fail.
	Since time.Time `json:"since"`
}

// StoreHealth is the state store's reachability.
type StoreHealth struct {
	// Kind is etcd or bbolt.
	Kind string `json:"kind"`
	// Healthy is false while the store cannot be reached: the gateway
	// serves its last routing table and refuses changes with 503.
	Healthy bool `json:"healthy"`
	// Since is when Healthy last changed.
	Since time.Time `json:"since"`
	// FromLocalCopy is true when the gateway started from its local copy
	// of the state because etcd was unreachable.
	FromLocalCopy bool `json:"from_local_copy,omitempty"`
	// Problem says why the state the store holds cannot be followed (it
	// went back in time, or it is damaged): the gateway serves its last
	// routing table and refuses changes. Empty when it can be followed.
	Problem string `json:"problem,omitempty"`
}

// Protection is what still protects the live pool.
type Protection struct {
	// RollbackTo is the pool that rollback would make live again, "" when
	// rollback would be refused.
	RollbackTo string `json:"rollback_to,omitempty"`
	// Deployment is the promoted deployment whose old pool is retained or
	// whose post-promotion checks run, "" when none.
	Deployment string `json:"deployment,omitempty"`
	// RetainedPool is the old pool kept for an instant rollback until
	// RetainedUntil (after that, until its retirement starts).
	RetainedPool  string    `json:"retained_pool,omitempty"`
	RetainedUntil time.Time `json:"retained_until,omitzero"`
	// AutoRollbackUntil ends the post-promotion checks: until then a gate
	// that fails rolls back to RetainedPool automatically. Zero when no
	// such checks run (none configured, ended by a forced retire, or
	// the deployment was rolled back).
	AutoRollbackUntil time.Time `json:"auto_rollback_until,omitzero"`
	// Summary says it in one sentence.
	Summary string `json:"summary"`
}

// Action is whether one action would be done now, or why it is refused.
type Action struct {
	// Allowed is true when the gateway would do the action now.
	Allowed bool `json:"allowed"`
	// Code is the refusal's code (as in the 409 answer), "" when allowed.
	Code string `json:"code,omitempty"`
	// Reason says why it is refused, or what the action would do.
	Reason string `json:"reason"`
	// Force is true when the refusal can be overridden with force (the
	// request's force field, the CLI's --force).
	Force bool `json:"force,omitempty"`
	// Restore, for rollback, is how many replicas it starts through the
	// agents before it switches, to bring a retained pool that
	// rollout.retention_mode shrink made smaller back to full size; the
	// request's now field (the CLI's --now) switches at once instead and
	// starts them in the background.
	Restore int `json:"restore,omitempty"`
}

// Pool is one pool's view in Status.
type Pool struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	Live  bool   `json:"live"`
	// Role is what the pool does now, one word: live; candidate (a
	// deployment's new version before its promotion); retained (the old
	// pool after a deployment's promotion, kept for rollback); retiring
	// (the old pool being drained and retired); standby (anything else).
	Role string `json:"role"`
	// InFlight is the number of requests and streams open on the pool.
	InFlight int64 `json:"in_flight"`
	// Requests counts requests sent to the pool's current replicas since
	// the gateway started (a counter: rates come from differences).
	Requests uint64 `json:"requests"`
	// HealthyReplicas counts replicas that may get new requests.
	HealthyReplicas int       `json:"healthy_replicas"`
	Replicas        []Replica `json:"replicas"`
	// GatewayQueue counts the pool's requests the llm balancer held at the
	// gateway while every replica was full (balancing.queue_timeout); nil
	// when none ever was.
	GatewayQueue *GatewayQueue `json:"gateway_queue,omitempty"`
}

// GatewayQueue counts a pool's requests held in the llm balancer's
// gateway queue since the gateway started. Held = Waiting + Dispatched +
// TimedOut + Canceled.
type GatewayQueue struct {
	// Waiting is how many are held now.
	Waiting int `json:"waiting"`
	// Held counts those that entered the queue.
	Held uint64 `json:"held"`
	// Dispatched counts those sent to a replica that freed a slot (or on,
	// when the pool could no longer hold them).
	Dispatched uint64 `json:"dispatched"`
	// TimedOut counts those that waited balancing.queue_timeout and then
	// went to the best replica as without the queue.
	TimedOut uint64 `json:"timed_out"`
	// Canceled counts those whose client left while held.
	Canceled uint64 `json:"canceled"`
	// Overflowed counts those that found balancing.queue_length held and
	// went to the best replica at once (not in Held).
	Overflowed uint64 `json:"overflowed"`
	// WaitSeconds is the time the requests no longer held were held.
	WaitSeconds float64 `json:"wait_seconds"`
}

// Replica is one replica's view in Status.
type Replica struct {
	URL      string `json:"url"`
	Healthy  bool   `json:"healthy"`
	InFlight int64  `json:"in_flight"`
	// Requests counts requests sent to this replica since start.
	Requests uint64 `json:"requests"`
	// LastError is why the last check failed, "" when it passed.
	LastError string    `json:"last_error,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	ChangedAt time.Time `json:"changed_at,omitzero"`
	// Asleep is true while the controller keeps this retained replica
	// asleep (rollout.retention_mode: sleep): healthy but not serving
	// completions until a rollback wakes it.
	Asleep bool `json:"asleep,omitempty"`
	// Engine is what the replica's engine last reported on its /metrics,
	// read by the llm balancer; nil with another balancer or before the
	// first read.
	Engine *EngineMetrics `json:"engine,omitempty"`
}

// EngineMetrics is a replica's engine load as the llm balancer last read it.
type EngineMetrics struct {
	// Waiting and Running are the engine's queued and running requests.
	Waiting float64 `json:"waiting"`
	Running float64 `json:"running"`
	// KVCacheUsage is the KV-cache use, 0 to 1.
	KVCacheUsage float64 `json:"kv_cache_usage"`
	// PrefixCacheHitRate is prefix-cache hits / queries in tokens since
	// the engine started, 0 when it reports none.
	PrefixCacheHitRate float64 `json:"prefix_cache_hit_rate"`
	// Batch is the replica's running batch as the balancer learned it:
	// the most sequences it was seen running at once (an engine does not
	// report its --max-num-seqs); 0 before any ran.
	Batch float64 `json:"batch"`
	// BatchKnown reports that a scrape in the last 5 s saw the engine
	// queueing, so that Batch is taken as its limit: only then may the
	// gateway queue hold requests for it.
	BatchKnown bool `json:"batch_known"`
	// ScrapedAt is when they were read.
	ScrapedAt time.Time `json:"scraped_at"`
}

// SwitchResult is the answer to POST /api/v1/promote and /rollback.
type SwitchResult struct {
	// Action is promote or rollback.
	Action string `json:"action"`
	// Live is the pool live now; Previous the one it replaced.
	Live     string `json:"live"`
	Previous string `json:"previous"`
	// Revision is the state revision that made the switch.
	Revision   int64     `json:"revision"`
	SwitchedAt time.Time `json:"switched_at"`
	// Forced is true when force overrode a refusal.
	Forced bool `json:"forced,omitempty"`
	// Restored is how many replicas a rollback started through the
	// agents to bring a shrunk retained pool (rollout.retention_mode
	// shrink) back to full size before it switched, and RestoreMS how long
	// that took (launch and checks), in milliseconds. Zero: none needed.
	Restored  int   `json:"restored,omitempty"`
	RestoreMS int64 `json:"restore_ms,omitempty"`
	// Woke is how many sleeping replicas (rollout.retention_mode sleep) a
	// rollback woke before it switched, and WakeMS how long that took, in
	// milliseconds. Zero: none.
	Woke   int   `json:"woke,omitempty"`
	WakeMS int64 `json:"wake_ms,omitempty"`
	// Note says what a rollback that switched no live pool did: during a
	// canary it stops the canary (its weight to 0, the deployment
	// aborted), and Live is the pool that stayed live, Previous empty.
	Note string `json:"note,omitempty"`
}

// Event is one entry of GET /api/v1/history: a transition of the state.
type Event struct {
	Time time.Time `json:"time"`
	// Revision is the state revision the event produced.
	Revision int64 `json:"revision"`
	// Actor is who asked: a CLI or API caller, or "controller".
	Actor string `json:"actor"`
	// Action is init, promote, rollback, deploy, phase (a deployment's
	// phase change: From and To are phases), abort, hook, apply_failed,
	// retention_ended, retire_failed, retire_retry, post_promotion_passed,
	// post_promotion_failed, post_promotion_inconclusive,
	// auto_rollback_failed, preflight_failed (a promote or rollback
	// refused because the pool's replicas did not answer the preflight
	// completion; nothing switched), launch (a deploy started replicas through
	// the agents), launch_ended (that launch failed), replicas_stopped
	// (orphans stopped, see Status.Orphans), shrink
	// (rollout.retention_mode shrink stopped replicas of the retained
	// pool), restore (a rollback brought the shrunk pool back to full
	// size, or did so in the background after a rollback with now) or
	// restore_failed (such a background restore could not start its
	// replicas; retried).
	Action string `json:"action"`
	// Deployment is the deployment concerned, if any.
	Deployment string `json:"deployment,omitempty"`
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Hook is the outcome of a hook run (Action hook).
	Hook *HookOutcome `json:"hook,omitempty"`
	// Forced is true when the operator overrode a refusal with force, such
	// as promoting a standby whose deployment failed.
	Forced bool `json:"forced,omitempty"`
	// Cost is the deployment's GPU-seconds up to this event, on the
	// events that move a deployment (To set).
	Cost *Cost `json:"cost,omitempty"`
}

// History is the answer to GET /api/v1/history.
type History struct {
	Events []Event `json:"events"`
}

// ErrorBody is the error object inside every admin API error answer:
// {"error":{"message":...,"type":...,"code":...}}.
type ErrorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

// ErrorResponse is the JSON shape of every admin API error.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// DeployRequest is the body of POST /api/v1/deployments.
type DeployRequest struct {
	// Model is the model id the new replicas serve.
	Model string `json:"model"`
	// Replicas are the new replicas' base URLs.
	Replicas []string `json:"replicas"`
	// Force ends the retention of a pool kept for rollback.
	Force bool `json:"force,omitempty"`
	// APIKeyFile is a file on the gateway's host holding the key the new
	// replicas want as Authorization: Bearer KEY (vLLM's --api-key). The
	// gateway reads it (and keeps only the path in its state); the key
	// never appears in status, history or logs. Empty means the target
	// pool's configured pools.<pool>.api_key_file.
	APIKeyFile string `json:"api_key_file,omitempty"`
	// ExpectedRevision, when not 0, refuses the deployment (409
	// revision_mismatch) when the state changed since this revision (a
	// commit with a history event; see docs/api.md, Switch guards).
	ExpectedRevision int64 `json:"expected_revision,omitempty"`
}

// PromoteRequest is the body of POST /api/v1/promote (an empty body is
// the zero value).
type PromoteRequest struct {
	// Force promotes a standby pool that holds a deployment which failed,
	// was aborted or was rolled back; the switch is recorded as forced.
	Force bool `json:"force,omitempty"`
	// ExpectedRevision, when not 0, refuses the switch (409
	// revision_mismatch) when the state changed since this revision (a
	// commit with a history event; see docs/api.md, Switch guards).
	ExpectedRevision int64 `json:"expected_revision,omitempty"`
}

// RollbackRequest is the body of POST /api/v1/rollback (an empty body is
// the zero value).
type RollbackRequest struct {
	// To names the pool to make live. Empty means the previous live pool,
	// which is refused when the last switch was already a rollback.
	To string `json:"to,omitempty"`
	// ExpectedRevision, when not 0, refuses the switch (409
	// revision_mismatch) when the state changed since this revision (a
	// commit with a history event; see docs/api.md, Switch guards).
	ExpectedRevision int64 `json:"expected_revision,omitempty"`
	// Now, with rollout.retention_mode shrink, switches at once onto the
	// replicas the shrunk retained pool has left, instead of first
	// bringing it back to full size (the missing ones are then started
	// through the agents in the background). Without a shrunk pool it
	// changes nothing.
	Now bool `json:"now,omitempty"`
}

// AbortRequest is the body of POST /api/v1/abort (an empty body is the
// zero value).
type AbortRequest struct {
	// ExpectedRevision, when not 0, refuses the abort (409
	// revision_mismatch) when the state changed since this revision (a
	// commit with a history event; see docs/api.md, Switch guards).
	ExpectedRevision int64 `json:"expected_revision,omitempty"`
	// Now is RollbackRequest.Now for an abort after the promotion, which
	// is a rollback. Before the promotion it changes nothing.
	Now bool `json:"now,omitempty"`
}

// DeployResult is the answer to POST /api/v1/deployments.
type DeployResult struct {
	Deployment Deployment `json:"deployment"`
	// Note says plainly what --force ended, when it did.
	Note string `json:"note,omitempty"`
}

// Deployment is one new version's way through warming, promotion,
// retention and retirement.
type Deployment struct {
	ID       string   `json:"id"`
	Pool     string   `json:"pool"`
	Model    string   `json:"model"`
	Replicas []string `json:"replicas"`
	// From is the pool that was live at deploy time and is retained for
	// rollback after the promotion.
	From      string `json:"from"`
	FromModel string `json:"from_model"`
	// Phase is pending, warming, validating, ready, promoted, retiring,
	// completed, failed, aborted or rolled_back.
	Phase      string    `json:"phase"`
	PhaseSince time.Time `json:"phase_since"`
	// Deadline is when the phase times out or moves on; DeadlineKind says
	// which: progress, validation, auto_promote, retention or drain.
	Deadline     time.Time `json:"deadline,omitzero"`
	DeadlineKind string    `json:"deadline_kind,omitempty"`
	// Reason explains the last transition.
	Reason string `json:"reason,omitempty"`
	// Waiting says what the deployment waits for right now.
	Waiting     string    `json:"waiting,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	ReadyAt     time.Time `json:"ready_at,omitzero"`
	PromotedAt  time.Time `json:"promoted_at,omitzero"`
	RetainUntil time.Time `json:"retain_until,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
	// PendingHooks are events whose hooks have not run yet.
	PendingHooks []string `json:"pending_hooks,omitempty"`
	// Hooks are the latest hook outcomes.
	Hooks             []HookOutcome `json:"hooks,omitempty"`
	RetireAttempts    int           `json:"retire_attempts,omitempty"`
	NextRetireAttempt time.Time     `json:"next_retire_attempt,omitzero"`
	RetireError       string        `json:"retire_error,omitempty"`
	// Gates are the validation gates while validating (and after the
	// promotion, during the post-promotion window), else their final
	// values.
	Gates []Gate `json:"gates,omitempty"`
	// PostPromotionUntil ends the window after the promotion in which the
	// new live pool is held to the gates (zero: none).
	PostPromotionUntil time.Time `json:"post_promotion_until,omitzero"`
	// GatesFromGateways is, in a fleet (etcd), how many gateways' traffic
	// the gates of the current window merge (the leader's and every
	// other gateway that published samples); zero without a fleet or a
	// window.
	GatesFromGateways int `json:"gates_from_gateways,omitempty"`
	// ShadowFromGateways is, in a fleet (etcd) while validating, how many
	// gateways' shadow copies (each gateway mirrors its own live traffic)
	// the shadow figures of the gates merge; zero without a fleet, outside
	// the validating phase or before the first copy.
	ShadowFromGateways int `json:"shadow_from_gateways,omitempty"`
	// Canary is the canary step of a deployment with the canary
	// strategy, nil otherwise.
	Canary *Canary `json:"canary,omitempty"`
	// Cost is the GPU-seconds every pool held, by state, while the
	// deployment was in progress (overlap: both pools running); nil when
	// no replica of either pool holds GPUs.
	Cost *Cost `json:"cost,omitempty"`
}

// Canary is where a canary deployment is in its steps.
type Canary struct {
	// Step is the step in progress, from 1; Steps is how many there are.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// Weight is the percentage of new requests the new version gets.
	Weight int `json:"weight"`
	// StepStartedAt is when the step began; StepEndsAt when its pause
	// ends (zero: the step waits for cutover promote).
	StepStartedAt time.Time `json:"step_started_at"`
	StepEndsAt    time.Time `json:"step_ends_at,omitzero"`
}

// HookOutcome is one hook run.
type HookOutcome struct {
	Event      string    `json:"event"`
	Hook       string    `json:"hook"`
	Start      time.Time `json:"start"`
	DurationMS int64     `json:"duration_ms"`
	OK         bool      `json:"ok"`
	ExitCode   int       `json:"exit_code,omitempty"`
	Status     int       `json:"status,omitempty"`
	Output     string    `json:"output,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Deployments is the answer to GET /api/v1/deployments.
type Deployments struct {
	Deployments []Deployment `json:"deployments"`
}

// RetireRequest is the body of POST /api/v1/retire.
type RetireRequest struct {
	// Force ends the post-promotion checks (and their automatic
	// rollback) with the retention; during retirement it marks the old
	// pool retired without waiting for failing on_retire hooks.
	Force bool `json:"force,omitempty"`
	// ExpectedRevision, when not 0, refuses the retirement (409
	// revision_mismatch) when the state changed since this revision (a
	// commit with a history event; see docs/api.md, Switch guards).
	ExpectedRevision int64 `json:"expected_revision,omitempty"`
}

// Gate is one validation gate's current state.
type Gate struct {
	// Name identifies the gate: error_rate, latency_p95_ratio, ttft_p95_ms,
	// ttft_p95_ratio, tokens_per_second_ratio, shadow_mismatch_rate,
	// synthetic_pass_rate.
	Name string `json:"name"`
	// Value is the current measurement; Threshold the limit; Op how they
	// compare for a pass ("<=" or ">=").
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Op        string  `json:"op"`
	// Samples is how many observations Value rests on; below MinSamples
	// the verdict is inconclusive, never pass.
	Samples    int `json:"samples"`
	MinSamples int `json:"min_samples"`
	// Verdict is pass, fail or inconclusive.
	Verdict string `json:"verdict"`
	// ConsecutiveFailures counts failing evaluations in a row; the gate
	// fails the deployment at its failure limit.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// Detail explains the value (baseline, units).
	Detail string `json:"detail,omitempty"`
}

// Traffic is the answer to GET /api/v1/traffic: each pool's recent
// traffic in fixed slots, kept in the gateway's memory (a restart starts
// it again).
type Traffic struct {
	// ResolutionSeconds is the span of one point (10).
	ResolutionSeconds int `json:"resolution_seconds"`
	// Since is when the gateway started keeping it; points start at the
	// later of Since and an hour ago.
	Since time.Time `json:"since"`
	// Pools holds each pool's points, oldest first; the last one is the
	// current slot, its rates over the part of it that has passed.
	Pools map[string][]TrafficPoint `json:"pools"`
}

// TrafficPoint is one slot of one pool. A request counts in the slot in
// which it ends.
type TrafficPoint struct {
	// Time is the start of the slot.
	Time time.Time `json:"t"`
	// RequestsPerSecond counts every request the pool answered or failed.
	RequestsPerSecond float64 `json:"requests_per_second"`
	// ErrorsPerSecond counts failed requests: 5xx, transport failures and
	// errors inside a stream (a client that left is not one).
	ErrorsPerSecond float64 `json:"errors_per_second"`
	// ErrorRatio is failed / all requests of the slot, 0 without requests.
	ErrorRatio float64 `json:"error_ratio"`
	// TTFTP95MS is the 95th percentile of time to first token of the
	// slot's streams answered 200, in milliseconds (within about 10 %);
	// absent without such streams.
	TTFTP95MS *float64 `json:"ttft_p95_ms,omitempty"`
}

// ShadowStatus counts one gateway's shadow copies since it started (the
// same figures as cutover_shadow_requests_total and
// cutover_shadow_mismatches_total).
type ShadowStatus struct {
	// Sent copies went to the candidate.
	Sent uint64 `json:"sent"`
	// Dropped copies were not sent: the queue, or the idle-priority
	// helper, was full (the gateway's cores or the candidate too busy), or
	// the helper exited holding them. Live requests never wait instead.
	Dropped uint64 `json:"dropped"`
	// Oversize requests were not copied: body over shadow.max_body_bytes.
	Oversize uint64 `json:"oversize"`
	// Failed copies got a 5xx, a transport error or an in-stream error.
	Failed uint64 `json:"failed"`
	// Mismatched deterministic pairs had different texts.
	Mismatched uint64 `json:"mismatched"`
}
