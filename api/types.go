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
}

// Pool is one pool's view in Status.
type Pool struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	Live  bool   `json:"live"`
	// InFlight is the number of requests and streams open on the pool.
	InFlight int64 `json:"in_flight"`
	// Requests counts requests sent to the pool's current replicas since
	// the gateway started (a counter: rates come from differences).
	Requests uint64 `json:"requests"`
	// HealthyReplicas counts replicas that may get new requests.
	HealthyReplicas int       `json:"healthy_replicas"`
	Replicas        []Replica `json:"replicas"`
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
	// post_promotion_failed, post_promotion_inconclusive or
	// auto_rollback_failed.
	Action string `json:"action"`
	// Deployment is the deployment concerned, if any.
	Deployment string `json:"deployment,omitempty"`
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Hook is the outcome of a hook run (Action hook).
	Hook *HookOutcome `json:"hook,omitempty"`
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
	// Force marks the old pool retired without waiting for failing
	// on_retire hooks.
	Force bool `json:"force,omitempty"`
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
