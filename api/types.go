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
}

// Pool is one pool's view in Status.
type Pool struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	Live  bool   `json:"live"`
	// InFlight is the number of requests and streams open on the pool.
	InFlight int64 `json:"in_flight"`
	// HealthyReplicas counts replicas that may get new requests.
	HealthyReplicas int       `json:"healthy_replicas"`
	Replicas        []Replica `json:"replicas"`
}

// Replica is one replica's view in Status.
type Replica struct {
	URL      string `json:"url"`
	Healthy  bool   `json:"healthy"`
	InFlight int64  `json:"in_flight"`
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
	// Action is init, promote or rollback.
	Action string `json:"action"`
	From   string `json:"from,omitempty"`
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
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
