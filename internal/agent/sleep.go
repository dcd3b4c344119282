package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The agent's vLLM-facing calls, exactly as vLLM documents them (the
// replica needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1):
//
//	POST /sleep?level=1|2
//	POST /wake_up[?tags=weights|kv_cache]
//	POST /collective_rpc {"method":"reload_weights"}
//	POST /reset_prefix_cache
//	GET  /is_sleeping

// ErrUnreachable is returned when the replica does not answer at all.
var ErrUnreachable = errors.New("replica unreachable")

// ErrState is returned when a replica is not in a state the call needs.
var ErrState = errors.New("replica state does not allow it")

// ReplicaError is a replica's own refusal of a sleep-mode call.
type ReplicaError struct {
	Call   string // e.g. "POST /sleep?level=1"
	Status int
	Body   string // the start of the replica's answer
}

// Error implements error.
func (e *ReplicaError) Error() string {
	msg := fmt.Sprintf("replica answered %s with %d", e.Call, e.Status)
	if e.Status == http.StatusNotFound {
		msg += " (sleep mode off: start it with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1)"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// call sends one request to a replica and checks for a 200.
func (a *Agent) call(ctx context.Context, base, method, path, body string) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return &ReplicaError{Call: method + " " + path, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	return nil
}

// target returns a replica in one of the wanted states and its URL.
func (a *Agent) target(id string, want ...State) (*Replica, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.find(id)
	if r == nil {
		return nil, "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	for _, s := range want {
		if r.State == s {
			return r, r.URL, nil
		}
	}
	return nil, "", fmt.Errorf("%w: replica %s is %s", ErrState, id, r.State)
}

// Sleep puts a running replica to sleep at level 1 or 2.
func (a *Agent) Sleep(ctx context.Context, id string, level int) (Replica, error) {
	if level != 1 && level != 2 {
		return Replica{}, fmt.Errorf("level %d: want 1 or 2", level)
	}
	r, base, err := a.target(id, StateRunning, StateSleeping)
	if err != nil {
		return Replica{}, err
	}
	if err := a.call(ctx, base, http.MethodPost, "/sleep?level="+strconv.Itoa(level), ""); err != nil {
		return Replica{}, fmt.Errorf("sleep %s: %w", id, err)
	}
	a.mu.Lock()
	if r.State == StateRunning || r.State == StateSleeping {
		if r.State == StateRunning {
			r.SleepLevel = level
		}
		r.State = StateSleeping
		a.saveLockedLogged()
	}
	s := r.snapshot()
	a.mu.Unlock()
	return s, nil
}

// Wake wakes a sleeping replica. After a level-2 sleep it runs vLLM's
// documented sequence: wake the weights, reload them, wake the KV cache,
// reset the prefix cache. Tags, when given, are passed to /wake_up as is
// and nothing else is done (the caller drives the sequence).
func (a *Agent) Wake(ctx context.Context, id string, tags []string) (Replica, error) {
	r, base, err := a.target(id, StateSleeping, StateRunning)
	if err != nil {
		return Replica{}, err
	}
	a.mu.Lock()
	level := r.SleepLevel
	a.mu.Unlock()
	var steps [][3]string // method, path, body
	switch {
	case len(tags) > 0:
		q := url.Values{"tags": tags}
		steps = append(steps, [3]string{http.MethodPost, "/wake_up?" + q.Encode(), ""})
	case level == 2:
		steps = append(steps,
			[3]string{http.MethodPost, "/wake_up?tags=weights", ""},
			[3]string{http.MethodPost, "/collective_rpc", `{"method":"reload_weights"}`},
			[3]string{http.MethodPost, "/wake_up?tags=kv_cache", ""},
			[3]string{http.MethodPost, "/reset_prefix_cache", ""})
	default:
		steps = append(steps, [3]string{http.MethodPost, "/wake_up", ""})
	}
	for _, s := range steps {
		if err := a.call(ctx, base, s[0], s[1], s[2]); err != nil {
			return Replica{}, fmt.Errorf("wake %s: %w", id, err)
		}
	}
	sleeping := false
	if len(tags) > 0 { // a partial wake: ask the replica
		sleeping, err = a.isSleeping(ctx, base)
		if err != nil {
			return Replica{}, fmt.Errorf("wake %s: %w", id, err)
		}
	}
	a.mu.Lock()
	if !sleeping && r.State == StateSleeping {
		r.State, r.SleepLevel = StateRunning, 0
		a.saveLockedLogged()
	}
	snap := r.snapshot()
	a.mu.Unlock()
	return snap, nil
}

// isSleeping asks GET /is_sleeping.
func (a *Agent) isSleeping(ctx context.Context, base string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/is_sleeping", nil)
	if err != nil {
		return false, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("%w: GET /is_sleeping: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return false, &ReplicaError{Call: "GET /is_sleeping", Status: resp.StatusCode, Body: string(b)}
	}
	var v struct {
		IsSleeping bool `json:"is_sleeping"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return false, fmt.Errorf("GET /is_sleeping: %w", err)
	}
	return v.IsSleeping, nil
}
