package rollout

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// urlLauncher launches one replica per URL with gpus GPUs each.
type urlLauncher struct {
	urls []string
	gpus int
}

func (l *urlLauncher) Launch(_ context.Context, _, model string, _ int, _ []LaunchSlot, _ func([]LaunchSlot)) ([]LaunchedReplica, error) {
	var out []LaunchedReplica
	for i, u := range l.urls {
		out = append(out, LaunchedReplica{Agent: "gpu-a", ID: model + "-" + string(rune('a'+i)), URL: u, GPUs: l.gpus})
	}
	return out, nil
}

func (l *urlLauncher) Stop(context.Context, []LaunchedReplica) error { return nil }

// usageOf returns the GPU-seconds of pool/state in c, and the GPUs held.
func usageOf(c *api.Cost, pool, state string) (float64, int) {
	u := c.Of(pool, state)
	return u.GPUSeconds, u.GPUs
}

// within1pc fails unless got is within 1 % of want.
func within1pc(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > want/100 {
		t.Fatalf("%s = %.1f GPU-seconds, want %.1f (±1 %%)", what, got, want)
	}
}

// TestGPUSecondsAddUp: GPU-seconds add up: the recorded overlap matches
// the phases' durations × GPUs within 1 %, in the deployment, its
// history events and the status; and a restart (kill -9: no last
// commit) loses none of it, the replicas having held their GPUs all along.
func TestGPUSecondsAddUp(t *testing.T) {
	_, blueA := sleepyReplica(t, "m1", true)
	_, blueB := sleepyReplica(t, "m1", true)
	_, greenA := sleepyReplica(t, "m3", true)
	_, greenB := sleepyReplica(t, "m3", true)
	f := newFx(t, func(o *Options) {
		o.Settings.RetentionMode = RetentionSleep
		o.ProbeTimeout = 5 * time.Second
		o.Launcher = &urlLauncher{urls: []string{greenA, greenB}, gpus: 2} // green: 4 GPUs
		o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: []string{blueA, blueB},
			Launched: []LaunchedReplica{{Agent: "gpu-a", ID: "b1", URL: blueA, GPUs: 1}, {Agent: "gpu-a", ID: "b2", URL: blueB, GPUs: 1}}} // blue: 2 GPUs
	})
	const (
		warm   = 90 * time.Second  // deploy → promote: green candidate
		retain = 600 * time.Second // promote → rollback: blue retained asleep
	)
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3"}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseReady)
	f.clk.Advance(warm)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.step() // blue put to sleep, recorded
	st := f.c.Status()
	if _, gpus := usageOf(st.Cost, "blue", GPURetainedAsleep); gpus != 2 {
		t.Fatalf("status cost %+v: want blue's 2 GPUs retained_asleep", st.Cost)
	}
	if _, gpus := usageOf(st.Cost, "green", GPULive); gpus != 4 {
		t.Fatalf("status cost %+v: want green's 4 GPUs live", st.Cost)
	}
	f.clk.Advance(retain / 2)
	f.restart() // kill -9: the ledger is as the last commit left it
	f.clk.Advance(retain / 2)
	if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil {
		t.Fatal(err)
	}
	d := f.latest()
	if d.Phase != string(PhaseRolledBack) || d.Cost == nil {
		t.Fatalf("deployment %s %s, cost %+v", d.ID, d.Phase, d.Cost)
	}
	wantCandidate := 4 * warm.Seconds()
	wantAsleep := 2 * retain.Seconds()
	cand, _ := usageOf(d.Cost, "green", GPUCandidate)
	asleep, _ := usageOf(d.Cost, "blue", GPURetainedAsleep)
	within1pc(t, "green candidate", cand, wantCandidate)
	within1pc(t, "blue retained asleep", asleep, wantAsleep)
	within1pc(t, "overlap", d.Cost.OverlapGPUSeconds, wantCandidate+wantAsleep)
	live, _ := usageOf(d.Cost, "green", GPULive)
	within1pc(t, "green live", live, 4*retain.Seconds())
	ev := f.lastEvent("rollback")
	if ev.Cost == nil {
		t.Fatalf("rollback event without cost: %+v", ev)
	}
	within1pc(t, "rollback event overlap", ev.Cost.OverlapGPUSeconds, wantCandidate+wantAsleep)

	// After the rollback green's replicas sit idle until the next
	// deploy; the deployment's own figures stop growing.
	f.clk.Advance(time.Minute)
	st = f.c.Status()
	if _, gpus := usageOf(st.Cost, "green", GPUIdle); gpus != 4 {
		t.Fatalf("status cost %+v: want green's 4 GPUs idle after the rollback", st.Cost)
	}
	idle, _ := usageOf(st.Cost, "green", GPUIdle)
	within1pc(t, "green idle", idle, 4*60)
	within1pc(t, "status overlap", st.Cost.OverlapGPUSeconds, wantCandidate+wantAsleep+4*60)
	within1pc(t, "deployment overlap after its end", f.latest().Cost.OverlapGPUSeconds, wantCandidate+wantAsleep)
}

// TestConfiguredGPUsPerReplica: the configuration's replicas count
// pools.<pool>.gpus_per_replica GPUs each; replicas given with --replica
// count none (cutover cannot know what they hold).
func TestConfiguredGPUsPerReplica(t *testing.T) {
	f := newFx(t, func(o *Options) {
		blue := o.Pools["blue"]
		blue.GPUsPerReplica = 2
		o.Pools["blue"] = blue
	})
	f.deploy(false) // green: newReplica, given with --replica
	f.clk.Advance(10 * time.Second)
	st := f.c.Status()
	secs, gpus := usageOf(st.Cost, "blue", GPULive)
	if gpus != 2 {
		t.Fatalf("blue live holds %d GPUs, want 2 (1 replica × gpus_per_replica 2): %+v", gpus, st.Cost)
	}
	within1pc(t, "blue live", secs, 20)
	if _, gpus := usageOf(st.Cost, "green", GPUCandidate); gpus != 0 {
		t.Fatalf("a --replica candidate holds %d GPUs in the accounting, want 0", gpus)
	}
}

// TestStoppedReplicasHoldNoGPUs: a launched replica its agent lists
// exited (stopped before its pool changed, such as the standby's before a
// new launch) holds no GPU in the accounting; while its agent is down it
// is still counted.
func TestStoppedReplicasHoldNoGPUs(t *testing.T) {
	var agents []api.AgentStatus
	f := newFx(t, func(o *Options) {
		green := o.Pools["green"]
		green.Launched = []LaunchedReplica{{Agent: "gpu-a", ID: "g1", URL: green.Replicas[0], GPUs: 2}}
		o.Pools["green"] = green
		o.Agents = func() []api.AgentStatus { return agents }
	})
	for _, tc := range []struct {
		name  string
		agent api.AgentStatus
		want  int
	}{
		{"running", api.AgentStatus{Name: "gpu-a", Up: true, Replicas: []api.AgentReplica{{ID: "g1", State: "running"}}}, 2},
		{"exited", api.AgentStatus{Name: "gpu-a", Up: true, Replicas: []api.AgentReplica{{ID: "g1", State: "exited"}}}, 0},
		{"forgotten by its agent", api.AgentStatus{Name: "gpu-a", Up: true}, 0},
		{"agent down", api.AgentStatus{Name: "gpu-a"}, 2},
	} {
		agents = []api.AgentStatus{tc.agent}
		f.step() // records what is held
		if _, gpus := usageOf(f.c.Status().Cost, "green", GPUIdle); gpus != tc.want {
			t.Errorf("%s: green idle holds %d GPUs, want %d", tc.name, gpus, tc.want)
		}
	}
}

// TestGPUSecondsDownAfterShrink: with retention_mode shrink the retained
// pool is counted with its full GPUs until the shrink, and with only the
// shrink_to replicas' GPUs from the shrink on: the stopped replicas' GPUs
// stop adding up at once, so the retention costs less than with keep.
func TestGPUSecondsDownAfterShrink(t *testing.T) {
	a, b, c := "http://127.0.0.1:11", "http://127.0.0.1:12", "http://127.0.0.1:13"
	f := newFx(t, func(o *Options) {
		o.Launcher = &countLauncher{}
		o.Settings.RetentionMode, o.Settings.ShrinkTo = RetentionShrink, 1
		o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: []string{a, b, c}, Launched: []LaunchedReplica{
			{Agent: "gpu-a", ID: "b1", URL: a, GPUs: 2}, {Agent: "gpu-a", ID: "b2", URL: b, GPUs: 2}, {Agent: "gpu-a", ID: "b3", URL: c, GPUs: 2}}} // blue: 6 GPUs
	})
	const (
		before = 100 * time.Second // promote → shrink: blue retained with 6 GPUs
		after  = 300 * time.Second // from the shrink: 1 replica, 2 GPUs
	)
	f.promoteNew()
	if _, gpus := usageOf(f.c.Status().Cost, "blue", GPURetainedAwake); gpus != 6 {
		t.Fatalf("status cost %+v: want blue's 6 GPUs retained_awake before the shrink", f.c.Status().Cost)
	}
	f.clk.Advance(before)
	f.step() // the shrink: 2 of 3 replicas stopped
	if got := blueURLs(f.c); len(got) != 1 {
		t.Fatalf("blue after the shrink = %v, want 1 replica", got)
	}
	st := f.c.Status()
	if _, gpus := usageOf(st.Cost, "blue", GPURetainedAwake); gpus != 2 {
		t.Fatalf("status cost %+v: want blue's 2 GPUs retained_awake after the shrink", st.Cost)
	}
	atShrink, _ := usageOf(st.Cost, "blue", GPURetainedAwake)
	within1pc(t, "blue retained awake at the shrink", atShrink, 6*before.Seconds())
	f.clk.Advance(after)
	got, _ := usageOf(f.c.Status().Cost, "blue", GPURetainedAwake)
	within1pc(t, "blue retained awake", got, 6*before.Seconds()+2*after.Seconds())
	if kept := 6 * (before + after).Seconds(); got >= kept {
		t.Fatalf("blue retained awake = %.1f GPU-seconds, want less than the %.1f it holds unshrunk", got, kept)
	}
	// The deployment's figures agree once a commit records them.
	if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{Now: true}); err != nil {
		t.Fatal(err)
	}
	d := f.latest()
	if d.Cost == nil {
		t.Fatalf("deployment %s without cost", d.ID)
	}
	dep, _ := usageOf(d.Cost, "blue", GPURetainedAwake)
	within1pc(t, "deployment's blue retained awake", dep, 6*before.Seconds()+2*after.Seconds())
}
