package rollout

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// fakeLauncher launches one replica at newReplica and records stops;
// stopErr fails them.
type fakeLauncher struct {
	mu      sync.Mutex
	stopErr error
	stopped []string
}

func (l *fakeLauncher) Launch(_ context.Context, key, model string, _ int, _ []LaunchSlot, progress func([]LaunchSlot)) ([]LaunchedReplica, error) {
	progress([]LaunchSlot{{Agent: "gpu-a", Key: key + ".0", ID: "new-" + model, URL: newReplica, State: SlotReady}})
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
	f.step() // stopped before its pool was emptied: no orphan to stop again
	if st := f.c.Status(); len(st.Orphans) > 0 {
		t.Fatalf("orphans after a retirement that stopped them: %+v", st.Orphans)
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

// slotLauncher records the slots it is asked to carry on and launches
// one replica per slot.
type slotLauncher struct {
	mu    sync.Mutex
	key   string
	slots []LaunchSlot
}

func (l *slotLauncher) Launch(_ context.Context, key, model string, _ int, slots []LaunchSlot, progress func([]LaunchSlot)) ([]LaunchedReplica, error) {
	l.mu.Lock()
	l.key, l.slots = key, slices.Clone(slots)
	l.mu.Unlock()
	var out []LaunchedReplica
	for i := range slots {
		slots[i].State, slots[i].ID, slots[i].URL, slots[i].GPUs = SlotReady, "r"+slots[i].Key, newReplica, 1
		out = append(out, LaunchedReplica{Agent: slots[i].Agent, ID: slots[i].ID, URL: newReplica, GPUs: 1})
	}
	progress(slots)
	return out, nil
}

func (l *slotLauncher) Stop(context.Context, []LaunchedReplica) error { return nil }

// TestLaunchCarriedOnAfterRestart: a launch the previous controller left
// in the state (killed while its replicas loaded) is carried on by the
// next one with the same slots and keys — each agent asked again for the
// replica it already started, none placed anew — and becomes the
// deployment the deploy asked for; meanwhile the status shows it and
// another deploy is refused.
func TestLaunchCarriedOnAfterRestart(t *testing.T) {
	l := &slotLauncher{}
	f := newFx(t, func(o *Options) { o.Launcher = l })
	left := &LaunchState{ID: "launch-r2", Model: "m3", Since: t0, Actor: "cli:op", Slots: []LaunchSlot{
		{Agent: "gpu-a", Key: "launch-r2.0", ID: "x1", URL: newReplica, GPUs: 1, State: SlotStarted},
	}}
	f.c.tmu.Lock()
	if err := f.c.commit(f.ctx, "cli:op", func(s *State) ([]event, error) { s.Launch = left; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	f.c.tmu.Unlock()
	f.restart() // the controller that launched is gone
	st := f.c.Status()
	if st.Launch == nil || st.Launch.Model != "m3" || len(st.Launch.Replicas) != 1 || st.Launch.Replicas[0].State != SlotStarted {
		t.Fatalf("status launch after the restart = %+v", st.Launch)
	}
	if _, gpus := usageOf(st.Cost, "green", GPUCandidate); gpus != 1 {
		t.Fatalf("the launch's started replica holds no GPU in the accounting: %+v", st.Cost)
	}
	_, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4"})
	refused(t, err, "launch_in_progress", "launch-r2 of m3")

	f.c.resumeLaunch(f.ctx)
	l.mu.Lock()
	if l.key != "launch-r2" || len(l.slots) != 1 || l.slots[0].Key != "launch-r2.0" || l.slots[0].ID != "x1" {
		t.Fatalf("carried on with key %q slots %+v, want the persisted ones", l.key, l.slots)
	}
	l.mu.Unlock()
	d := f.latest()
	if d.Model != "m3" || d.CreatedBy != "cli:op" || len(d.Replicas) != 1 || d.Replicas[0] != newReplica {
		t.Fatalf("deployment after the carried-on launch: %+v", d)
	}
	if st := f.c.Status(); st.Launch != nil {
		t.Fatalf("launch still in the status after its deployment: %+v", st.Launch)
	}
	f.c.resumeLaunch(f.ctx) // nothing left to carry on: no second deployment
	if ds := f.c.Deployments(); len(ds) != 1 {
		t.Fatalf("%d deployments, want 1", len(ds))
	}
}

// TestDroppedReplicasStoppedLater: a launched replica a commit drops
// while its agent does not answer (a deploy with --replica replacing the
// standby's launched replicas) stays on record as an orphan — in the
// status, holding its GPU — and is stopped by a later reconcile, with
// backoff, once its agent answers.
func TestDroppedReplicasStoppedLater(t *testing.T) {
	l := &fakeLauncher{}
	f := newFx(t, func(o *Options) { o.Launcher = l })
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3"}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseReady)
	if _, err := f.c.Abort(f.ctx, "op", api.AbortRequest{}); err != nil {
		t.Fatal(err)
	}
	l.set(errors.New("agent gpu-a: connection refused"))
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4", Replicas: []string{"http://127.0.0.1:4"}}); err != nil {
		t.Fatal(err)
	}
	st := f.c.Status()
	if len(st.Orphans) != 1 || st.Orphans[0].ID != "new-m3" || st.Orphans[0].State != "stopping" {
		t.Fatalf("status orphans %+v, want new-m3 stopping", st.Orphans)
	}
	f.step() // the stop fails: backoff
	l.set(nil)
	f.step() // within the backoff: not tried
	if st := f.c.Status(); len(st.Orphans) != 1 {
		t.Fatalf("orphan forgotten before it was stopped: %+v", st.Orphans)
	}
	f.clk.Advance(time.Minute)
	f.step()
	if st := f.c.Status(); len(st.Orphans) != 0 {
		t.Fatalf("orphans after the agent answered again: %+v", st.Orphans)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Equal(l.stopped, []string{"gpu-a/new-m3"}) {
		t.Fatalf("stopped %v, want [gpu-a/new-m3] once", l.stopped)
	}
	if ev := f.lastEvent("replicas_stopped"); !strings.Contains(ev.Reason, "1 replica(s)") {
		t.Fatalf("history: %+v", ev)
	}
}

// TestForcedDeployKeepsItsLaunchedReplicas: a forced deploy without
// replicas launches its own, then waits (pending) for the retained pool
// to retire; its replicas are in no pool spec yet, but they are held, not
// orphans: nothing stops them (a regression stopped all three at once, and
// the deployment then warmed against dead addresses).
func TestForcedDeployKeepsItsLaunchedReplicas(t *testing.T) {
	l := &modelURLLauncher{}
	f := newFx(t, func(o *Options) { o.Launcher = l })
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3"}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deployment.Phase != string(PhasePending) {
		t.Fatalf("forced deploy is %s, want pending", res.Deployment.Phase)
	}
	f.step()
	if st := f.c.Status(); len(st.Orphans) > 0 {
		t.Fatalf("the forced deploy's own replicas became orphans: %+v", st.Orphans)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.stopped, "gpu-a/new-m4") {
		t.Fatalf("stopped %v: the forced deploy's own replica among them", l.stopped)
	}
}

// modelURLLauncher is fakeLauncher with the launched replica's address
// per model (m3 at newReplica), so that two versions' replicas differ.
type modelURLLauncher struct{ fakeLauncher }

func (l *modelURLLauncher) Launch(ctx context.Context, key, model string, n int, slots []LaunchSlot, progress func([]LaunchSlot)) ([]LaunchedReplica, error) {
	if model == "m3" {
		return l.fakeLauncher.Launch(ctx, key, model, n, slots, progress)
	}
	url := "http://127.0.0.1:9/" + model
	progress([]LaunchSlot{{Agent: "gpu-a", Key: key + ".0", ID: "new-" + model, URL: url, State: SlotReady}})
	return []LaunchedReplica{{Agent: "gpu-a", ID: "new-" + model, URL: url}}, nil
}
