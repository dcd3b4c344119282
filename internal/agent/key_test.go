package agent

import (
	"slices"
	"testing"
)

// TestAgentStartKeyIsIdempotent: a start with a key the agent knows
// returns that replica instead of starting another (a controller that
// restarted mid-launch asks again): one process, one GPU booked; another
// key starts another replica.
func TestAgentStartKeyIsIdempotent(t *testing.T) {
	h := startAgent(t, testConfig(t, mockCommand()))
	var first, again, other Replica
	if code := apiCall(t, h.url, "POST", "/v1/replicas", `{"model":"m1","gpus":1,"key":"l-1.0"}`, &first); code != 201 {
		t.Fatalf("first start: %d", code)
	}
	if code := apiCall(t, h.url, "POST", "/v1/replicas?wait=30s", `{"model":"m1","gpus":1,"key":"l-1.0"}`, &again); code != 201 {
		t.Fatalf("start again with the same key: %d", code)
	}
	if again.ID != first.ID || again.PID != first.PID || again.Key != "l-1.0" || again.State != StateRunning {
		t.Fatalf("same key: got %+v, want replica %s (pid %d) running", again, first.ID, first.PID)
	}
	booked := slices.DeleteFunc(ledger(t, h.url), func(s string) bool { return s == "" })
	if len(booked) != 1 || booked[0] != first.ID {
		t.Fatalf("GPU ledger %v, want one GPU held by %s", booked, first.ID)
	}
	if code := apiCall(t, h.url, "POST", "/v1/replicas", `{"model":"m1","gpus":1,"key":"l-1.1"}`, &other); code != 201 || other.ID == first.ID {
		t.Fatalf("another key: %d %+v, want a new replica", code, other)
	}
}
