package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
)

// trimHookRunner is a HookRunner that succeeds at once and counts runs by
// deployment.
type trimHookRunner struct {
	mu   sync.Mutex
	runs map[string]int
}

func (r *trimHookRunner) Run(_ context.Context, s hook.Spec, p hook.Payload) hook.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]int{}
	}
	r.runs[p.Deployment]++
	return hook.Outcome{Event: p.Event, Hook: s.Name(), OK: true}
}

func abortedDeployment(id string, pending ...string) *Deployment {
	d := &Deployment{ID: id, Pool: "green", Model: "m3", PendingHooks: pending}
	d.enter(PhaseAborted, time.Unix(0, 0), "aborted", time.Time{})
	return d
}

// TestTrimKeepsPendingHooks: trimming old deployments never drops one
// whose hooks must still run (a regression: 104 quick deployments lost
// the on_deploy hooks of d-24 to d-84).
func TestTrimKeepsPendingHooks(t *testing.T) {
	var s State
	for i := range keepDeployments + 5 {
		var pending []string
		if i < 5 {
			pending = []string{"on_deploy"}
		}
		s.Deployments = append(s.Deployments, abortedDeployment(fmt.Sprintf("d-%d", i+1), pending...))
	}
	s.add(abortedDeployment("d-new"))
	if len(s.Deployments) != keepDeployments {
		t.Errorf("kept %d deployments, want %d", len(s.Deployments), keepDeployments)
	}
	for i := range 5 {
		id := fmt.Sprintf("d-%d", i+1)
		if d := s.find(id); d == nil || !slices.Equal(d.PendingHooks, []string{"on_deploy"}) {
			t.Errorf("%s with a pending on_deploy hook was trimmed", id)
		}
	}
	if s.find("d-6") != nil || s.find("d-new") == nil {
		t.Errorf("want the oldest finished deployment without pending hooks (d-6) trimmed and d-new kept")
	}
}

// TestHookBacklogRefusesDeploy: when maxDeployments are kept for their
// pending hooks, a new deployment is refused with a reason naming the
// oldest waiting one; once the hooks ran, every one of them once, the
// deployments are trimmed and deploying works again.
func TestHookBacklogRefusesDeploy(t *testing.T) {
	o, st := boltOptions(t, t.TempDir(), nil)
	defer st.Close()
	runner := &trimHookRunner{}
	o.HookRunner = runner
	o.Hooks = map[string][]hook.Spec{"on_deploy": {{Command: []string{"true"}}}}
	c := mustStart(t, o)
	ctx := context.Background()
	c.tmu.Lock()
	err := c.commit(ctx, "test", func(s *State) ([]event, error) {
		for i := range maxDeployments {
			s.Deployments = append(s.Deployments, abortedDeployment(fmt.Sprintf("d-%d", i+1), "on_deploy"))
		}
		s.NextID = maxDeployments
		return nil, nil
	})
	c.tmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	req := api.DeployRequest{Model: "m3", Replicas: []string{"http://127.0.0.1:3"}}
	_, err = c.Deploy(ctx, "test", req)
	var r *Refusal
	if !errors.As(err, &r) || r.Code != "hooks_backlog" || r.Status != 0 || !reasonHas(r.Reason, "d-1", "on_deploy", fmt.Sprint(maxDeployments)) {
		t.Fatalf("Deploy with %d deployments waiting for hooks: %v, want a 409 hooks_backlog refusal naming d-1", maxDeployments, err)
	}
	c.Reconcile(ctx)
	for i := range maxDeployments {
		if id := fmt.Sprintf("d-%d", i+1); runner.runs[id] != 1 {
			t.Errorf("on_deploy of %s ran %d times, want 1", id, runner.runs[id])
		}
	}
	res, err := c.Deploy(ctx, "test", req)
	if err != nil {
		t.Fatalf("Deploy after the hooks ran: %v", err)
	}
	if st, _, _ := c.snapshot(); len(st.Deployments) > keepDeployments {
		n := len(st.Deployments)
		t.Errorf("state holds %d deployments after the hooks ran, want at most %d", n, keepDeployments)
	}
	if res.Deployment.ID != fmt.Sprintf("d-%d", maxDeployments+1) {
		t.Errorf("new deployment %s", res.Deployment.ID)
	}
}

func reasonHas(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
