// Package rollout holds the control plane: the persisted state of which
// pool is live, and the transitions that change it, each written to the
// store before it is applied to the data plane.
package rollout

import (
	"encoding/json"
	"fmt"
	"time"
)

// State is the document the controller persists at every transition.
type State struct {
	// Live is the pool that receives client traffic.
	Live string `json:"live"`
	// Previous is the pool that was live before the last switch.
	Previous string `json:"previous,omitempty"`
	// SwitchedAt is when Live last changed.
	SwitchedAt time.Time `json:"switched_at,omitzero"`
}

// event is one history entry as stored.
type event struct {
	Time     time.Time `json:"time"`
	Revision int64     `json:"revision"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	From     string    `json:"from,omitempty"`
	To       string    `json:"to"`
	Reason   string    `json:"reason,omitempty"`
}

func decodeState(b []byte) (State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("decode persisted state: %w", err)
	}
	return s, nil
}
