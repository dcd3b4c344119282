package rollout

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// fakeLauncher launches one replica at newReplica and records stops;
// stopErr fails them.
type fakeLauncher struct {
	mu      sync.Mutex
	stopErr error
	stopped []string
}

func (l *fakeLauncher) Launch(_ context.Context, model string, _ int, progress func(int, int)) ([]LaunchedReplica, error) {
	progress(1, 1)
	return []LaunchedReplica{{Agent: "gpu-a", ID: "new-" + model, URL: newReplica}}, nil
}

func (l *fakeLauncher) Stop(_ context.Context, rs []LaunchedReplica) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopErr != nil {
		return l.stopErr
	}
	for _, r := range rs {
		l.stopped = append(l.stopped, r.Agent+"/"+r.ID)
	}
	return nil
}

func (l *fakeLauncher) set(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopErr = err
}

// TestRetirementStopsLaunchedReplicas: a deploy without replicas takes
// the launcher's; the retirement of a pool whose replicas were launched
// stops them after the on_retire hooks, and a failing stop is a failed
// retirement attempt, retried like a hook.
func TestRetirementStopsLaunchedReplicas(t *testing.T) {
	l := &fakeLauncher{}
	f := newFx(t, func(o *Options) {
		o.Launcher = l
		blue := o.Pools["blue"]
		blue.Launched = []LaunchedReplica{{Agent: "gpu-a", ID: "old", URL: blue.Replicas[0]}}
		o.Pools["blue"] = blue
	})
	res, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Deployment.Replicas; len(got) != 1 || got[0] != newReplica {
		t.Fatalf("deployment replicas %v, want the launched %s", got, newReplica)
	}
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	l.set(errors.New("agent gpu-a: connection refused"))
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseRetiring)
	f.step()
	d := f.latest()
	if d.Phase != "retiring" || d.RetireAttempts != 1 || !strings.Contains(d.RetireError, "stopping blue's 1 replica(s) through the agents") || !strings.Contains(d.RetireError, "connection refused") {
		t.Fatalf("after a failing stop: %+v", d)
	}
	l.set(nil)
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
		t.Fatal(err)
	}
	d = f.until(PhaseCompleted)
	if !strings.Contains(d.Reason, "its 1 replica(s) stopped through the agents") {
		t.Fatalf("completed: %s", d.Reason)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.stopped) != 1 || l.stopped[0] != "gpu-a/old" {
		t.Fatalf("stopped %v, want [gpu-a/old]", l.stopped)
	}
}

// TestDeployWithoutReplicasNeedsAgents: without a launcher a deploy
// without replicas is refused as before.
func TestDeployWithoutReplicasNeedsAgents(t *testing.T) {
	f := newFx(t, nil)
	_, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3"})
	refused(t, err, "no_replicas", "no agents")
}
