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
)

// countLauncher launches n replicas at fresh URLs and records launches
// and stops; launchErr and stopErr fail them.
type countLauncher struct {
	mu        sync.Mutex
	next      int
	launches  []string // "model xN"
	stopped   []string // URLs
	launchErr error
	stopErr   error
}

func (l *countLauncher) Launch(_ context.Context, _, model string, n int, _ []LaunchSlot, progress func([]LaunchSlot)) ([]LaunchedReplica, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.launchErr != nil {
		return nil, l.launchErr
	}
	if n < 1 {
		n = 1
	}
	l.launches = append(l.launches, fmt.Sprintf("%s x%d", model, n))
	var out []LaunchedReplica
	for range n {
		l.next++
		out = append(out, LaunchedReplica{Agent: "gpu-a", ID: fmt.Sprintf("r%d", l.next), URL: fmt.Sprintf("http://127.0.0.1:%d", 9100+l.next)})
	}
	slots := make([]LaunchSlot, n)
	for i, r := range out {
		slots[i] = LaunchSlot{Agent: r.Agent, ID: r.ID, URL: r.URL, State: SlotReady}
	}
	progress(slots)
	return out, nil
}

func (l *countLauncher) Stop(_ context.Context, rs []LaunchedReplica) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopErr != nil {
		return l.stopErr
	}
	for _, r := range rs {
		l.stopped = append(l.stopped, r.URL)
	}
	return nil
}

func (l *countLauncher) state() (launches, stopped []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.launches), slices.Clone(l.stopped)
}

// shrinkFx is a controller in retention_mode shrink keeping keep, whose
// blue pool holds the replicas urls, those in launched started by agent
// gpu-a.
func shrinkFx(t *testing.T, keep int, urls []string, launched ...string) (*fx, *countLauncher) {
	l := &countLauncher{}
	f := newFx(t, func(o *Options) {
		o.Launcher = l
		o.Settings.RetentionMode, o.Settings.ShrinkTo = RetentionShrink, keep
		spec := PoolSpec{Model: "m1", Replicas: urls}
		for i, u := range launched {
			spec.Launched = append(spec.Launched, LaunchedReplica{Agent: "gpu-a", ID: fmt.Sprintf("old%d", i), URL: u})
		}
		o.Pools["blue"] = spec
	})
	return f, l
}

func (f *fx) promoteNew() {
	f.t.Helper()
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		f.t.Fatal(err)
	}
}

// settle reconciles once and waits for the background restores it started.
func (f *fx) settle() {
	f.step()
	f.c.shrinks.bg.Wait()
}

func blueURLs(c *Controller) []string {
	var out []string
	for _, r := range c.Status().Pools["blue"].Replicas {
		out = append(out, r.URL)
	}
	return out
}

// TestRetentionShrinkRollbackRestores: after a promotion the retained pool
// is shrunk to shrink_to replicas (the others stopped through their
// agents, one that no agent started kept and noted); the status's actions
// and protection say what a rollback will do, and a rollback first starts
// the missing replicas, waits until they serve, then switches, carrying
// the restore in its answer and the history. Retirement after the next
// promotion stops every replica of that pool, the restored ones too.
func TestRetentionShrinkRollbackRestores(t *testing.T) {
	a, b, c, plain := "http://127.0.0.1:11", "http://127.0.0.1:12", "http://127.0.0.1:13", "http://127.0.0.1:14"
	for _, tc := range []struct {
		name      string
		keep      int
		urls      []string
		launched  []string
		wantLeft  []string
		wantNote  string
		wantStops []string
	}{
		{"launched only", 1, []string{a, b, c}, []string{a, b, c}, []string{a}, "shrunk to 1 of 3 replica(s)", []string{b, c}},
		{"keeps two", 2, []string{a, b, c}, []string{a, b, c}, []string{a, b}, "shrunk to 2 of 3 replica(s)", []string{c}},
		{"one not started by an agent", 1, []string{a, plain, b}, []string{a, b}, []string{plain}, "kept (not started by an agent): " + plain, []string{a, b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, l := shrinkFx(t, tc.keep, tc.urls, tc.launched...)
			f.promoteNew()
			f.step()
			if got := blueURLs(f.c); !slices.Equal(got, tc.wantLeft) {
				t.Fatalf("blue after the shrink = %v, want %v", got, tc.wantLeft)
			}
			if _, stopped := l.state(); !slices.Equal(slices.Sorted(slices.Values(stopped)), tc.wantStops) { // stopped at once: in any order
				t.Fatalf("stopped %v, want %v", stopped, tc.wantStops)
			}
			d := f.latest()
			if !strings.Contains(d.Waiting, tc.wantNote) {
				t.Fatalf("status note %q, want %q", d.Waiting, tc.wantNote)
			}
			if ev := f.lastEvent("shrink"); !strings.Contains(ev.Reason, "stopped "+strings.Join(tc.wantStops, ", ")+" through the agents") {
				t.Fatalf("shrink event %q", ev.Reason)
			}
			f.step() // a second reconcile stops nothing more
			st := f.c.Status()
			missing := len(tc.urls) - len(tc.wantLeft)
			rb := st.Actions["rollback"]
			if !rb.Allowed || !strings.Contains(rb.Reason, fmt.Sprintf("first brought back to its %d replicas (%d started through the agents", len(tc.urls), missing)) || !strings.Contains(rb.Reason, "--now") {
				t.Fatalf("rollback action %+v", rb)
			}
			if !strings.Contains(st.Protection.Summary, fmt.Sprintf("shrunk to %d of %d replicas", len(tc.wantLeft), len(tc.urls))) {
				t.Fatalf("protection %q", st.Protection.Summary)
			}

			sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
			if err != nil || sw.Live != "blue" || sw.Restored != missing {
				t.Fatalf("rollback = %+v, %v; want blue live after restoring %d", sw, err, missing)
			}
			if launches, _ := l.state(); !slices.Equal(launches, []string{fmt.Sprintf("m1 x%d", missing)}) {
				t.Fatalf("launches %v", launches)
			}
			blue := f.c.Status().Pools["blue"]
			if len(blue.Replicas) != len(tc.urls) || blue.HealthyReplicas != len(tc.urls) {
				t.Fatalf("blue after the rollback: %d replicas, %d healthy; want %d of each", len(blue.Replicas), blue.HealthyReplicas, len(tc.urls))
			}
			if ev := f.lastEvent("rollback"); !strings.Contains(ev.Reason, fmt.Sprintf("after restoring blue to full size: %d replica(s) started through the agents and serving m1 in ", missing)) {
				t.Fatalf("rollback event %q", ev.Reason)
			}
			if ev := f.lastEvent("restore"); !strings.Contains(ev.Reason, fmt.Sprintf("blue brought back to %d replica(s)", len(tc.urls))) {
				t.Fatalf("restore event %q", ev.Reason)
			}

			// The next deployment goes to green again; its retirement
			// stops blue's launched replicas, restored ones included.
			_, before := l.state()
			f.promoteNew()
			if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
				t.Fatal(err)
			}
			f.until(PhaseCompleted)
			_, after := l.state()
			stoppedAtRetire := after[len(before):]
			wantRetired := len(tc.launched) - len(tc.wantStops) + missing
			if len(stoppedAtRetire) != wantRetired || slices.Contains(stoppedAtRetire, plain) {
				t.Fatalf("retirement stopped %v, want %d launched replicas", stoppedAtRetire, wantRetired)
			}
		})
	}
}

// TestRetentionShrinkRollbackNow: the shrink survives a restart, and
// rollback with now switches at once onto the replicas the shrunk pool
// has left; nothing is launched.
func TestRetentionShrinkRollbackNow(t *testing.T) {
	f, l := shrinkFx(t, 1, []string{"http://127.0.0.1:11", "http://127.0.0.1:12"}, "http://127.0.0.1:11", "http://127.0.0.1:12")
	f.promoteNew()
	f.step()
	// The shrink is on record: a restart neither redoes nor forgets it.
	f.restart()
	f.step()
	if _, stopped := l.state(); len(stopped) != 1 || !strings.Contains(f.latest().Waiting, "shrunk to 1 of 2 replica(s)") {
		t.Fatalf("after a restart: stopped %v, note %q", stopped, f.latest().Waiting)
	}
	v := f.c.view()
	dec := decideRollback(v, api.RollbackRequest{Now: true})
	if !dec.Allowed || dec.Restore != 0 || !strings.Contains(dec.Reason, "at once on the 1 of its 2 replicas left (--now), once they answer the preflight completion; the 1 missing are then started through the agents in the background") {
		t.Fatalf("decision with now: %+v", dec)
	}
	sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{Now: true})
	if err != nil || sw.Live != "blue" || sw.Restored != 0 {
		t.Fatalf("rollback --now = %+v, %v", sw, err)
	}
	if launches, _ := l.state(); len(launches) != 0 {
		t.Fatalf("rollback --now launched %v before switching", launches)
	}
	if got := blueURLs(f.c); len(got) != 1 {
		t.Fatalf("blue has %v, want the one replica left", got)
	}
	if ev := f.lastEvent("rollback"); !strings.Contains(ev.Reason, "on 1 of its 2 replicas at once (--now); the 1 missing are started through the agents in the background") {
		t.Fatalf("rollback event %q", ev.Reason)
	}
	// Then the live pool gets its missing replica back in the background.
	f.settle()
	if launches, _ := l.state(); !slices.Equal(launches, []string{"m1 x1"}) {
		t.Fatalf("background restore launched %v, want [m1 x1]", launches)
	}
	if got := blueURLs(f.c); len(got) != 2 {
		t.Fatalf("blue has %v after the background restore, want 2 replicas", got)
	}
	if ev := f.lastEvent("restore"); !strings.Contains(ev.Reason, "blue brought back to 2 replica(s) in the background") {
		t.Fatalf("restore event %q", ev.Reason)
	}
	f.settle()
	if launches, _ := l.state(); len(launches) != 1 {
		t.Fatalf("restored twice: %v", launches)
	}
}

// TestRetentionShrinkWaits: the shrink waits for the post-promotion
// checks (their automatic rollback wants the whole pool at once) and for
// the requests in flight on the replicas to stop (up to the drain
// timeout); a failing stop is retried with backoff and the status says
// why.
func TestRetentionShrinkWaits(t *testing.T) {
	a, b := "http://127.0.0.1:11", "http://127.0.0.1:12"
	f, l := shrinkFx(t, 1, []string{a, b}, a, b)
	f.opts.Validator = f.val
	f.opts.Validation.PostPromotionWindow = 10 * time.Minute
	f.restart()
	f.promoteNew()
	f.step()
	if got := blueURLs(f.c); len(got) != 2 {
		t.Fatalf("shrunk during the post-promotion checks: %v", got)
	}
	f.clk.Advance(10*time.Minute + time.Second)
	busy := f.c.Pool("blue").Replicas[1] // b: to be stopped
	busy.Acquire()
	f.step()
	f.step()
	if got := blueURLs(f.c); len(got) != 2 || !strings.Contains(f.latest().Waiting, "1 request(s) in flight on the replicas to stop") {
		t.Fatalf("shrunk with a request in flight: %v (%s)", got, f.latest().Waiting)
	}
	busy.Release()
	l.mu.Lock()
	l.stopErr = errors.New("agent gpu-a: connection refused")
	l.mu.Unlock()
	f.step()
	if got := blueURLs(f.c); len(got) != 2 || !strings.Contains(f.latest().Waiting, "connection refused") {
		t.Fatalf("after a failing stop: %v (%s)", got, f.latest().Waiting)
	}
	l.mu.Lock()
	l.stopErr = nil
	l.mu.Unlock()
	f.step()
	if got := blueURLs(f.c); len(got) != 2 {
		t.Fatalf("retried before the backoff: %v", got)
	}
	f.clk.Advance(6 * time.Second)
	f.step()
	if got := blueURLs(f.c); !slices.Equal(got, []string{a}) {
		t.Fatalf("after the backoff blue = %v, want [%s]", got, a)
	}
}

// TestRetentionStopRefusesRollback: with retention_mode stop a rollback
// is refused naming the mode, from the promotion through the retirement
// to after it.
func TestRetentionStopRefusesRollback(t *testing.T) {
	l := &fakeLauncher{}
	f := newFx(t, func(o *Options) {
		o.Launcher = l
		o.Settings.RetentionMode = RetentionStop
	})
	f.promoteNew()
	for _, phase := range []Phase{PhasePromoted, PhaseRetiring, PhaseCompleted} {
		if phase != PhasePromoted {
			f.until(phase)
		}
		_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
		var r *Refusal
		if !errors.As(err, &r) || (r.Status != 0 && r.Status != 409) || !strings.Contains(r.Reason, "rollout.retention_mode is stop") {
			t.Fatalf("rollback while %s = %v, want a 409 naming retention_mode stop", phase, err)
		}
		if a := f.c.Status().Actions["rollback"]; a.Allowed || !strings.Contains(a.Reason, "retention_mode is stop") {
			t.Fatalf("status action while %s: %+v", phase, a)
		}
	}
}

// TestDecideRollbackByRetentionMode: what a rollback may do in each
// retention mode, as the status's actions show it.
func TestDecideRollbackByRetentionMode(t *testing.T) {
	mode := func(v View, m string) View { v.RetentionMode = m; return v }
	// shrunk is blue (3 replicas at the promotion of d-3) shrunk to 1.
	shrunk := func(healthy bool) View {
		d := dep("d-3", "green", PhasePromoted)
		d.FromReplicas = []string{"http://a", "http://b", "http://c"}
		d.Shrunk = []LaunchedReplica{{Agent: "gpu-a", ID: "2", URL: "http://b"}, {Agent: "gpu-a", ID: "3", URL: "http://c"}}
		v := mode(scene("green", d), RetentionShrink)
		v.State.Pools["blue"] = PoolSpec{Model: "old", Replicas: []string{"http://a"}}
		if !healthy {
			unhealthy("blue")(&v)
		}
		return v
	}
	retiredByStop := func() View {
		v := mode(retiredBlue(), RetentionStop)
		return v
	}
	for _, tc := range []struct {
		name    string
		v       View
		req     api.RollbackRequest
		want    want
		restore int
	}{
		{"keep", mode(scene("green", dep("d-3", "green", PhasePromoted)), RetentionKeep), api.RollbackRequest{},
			want{allowed: true, target: "blue", dep: "d-3", reason: []string{"live again at once"}}, 0},
		{"shrink, not shrunk yet", mode(scene("green", dep("d-3", "green", PhasePromoted)), RetentionShrink), api.RollbackRequest{},
			want{allowed: true, target: "blue", dep: "d-3", reason: []string{"live again at once"}}, 0},
		{"shrink, shrunk: restore first", shrunk(true), api.RollbackRequest{},
			want{allowed: true, target: "blue", dep: "d-3", reason: []string{"first brought back to its 3 replicas (2 started through the agents", "--now` switches at once onto the 1 left"}}, 2},
		{"shrink, shrunk, unhealthy: restore still possible", shrunk(false), api.RollbackRequest{},
			want{allowed: true, target: "blue", dep: "d-3"}, 2},
		{"shrink, shrunk, now", shrunk(true), api.RollbackRequest{Now: true},
			want{allowed: true, target: "blue", dep: "d-3", reason: []string{"at once on the 1 of its 3 replicas left"}}, 0},
		{"shrink, shrunk, now, unhealthy", shrunk(false), api.RollbackRequest{Now: true},
			want{code: "pool_cannot_serve", reason: []string{"retained pool blue"}}, 0},
		{"stop, promoted", mode(scene("green", dep("d-3", "green", PhasePromoted)), RetentionStop), api.RollbackRequest{},
			want{code: "retention_mode_stop", reason: []string{"rollout.retention_mode is stop", "deploy old again"}}, 0},
		{"stop, retiring", mode(scene("green", dep("d-3", "green", PhaseRetiring)), RetentionStop), api.RollbackRequest{},
			want{code: "retention_mode_stop", reason: []string{"rollout.retention_mode is stop", "being retired"}}, 0},
		{"stop, retired", retiredByStop(), api.RollbackRequest{},
			want{code: "retired", reason: []string{"retired", "rollout.retention_mode is stop"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideRollback(tc.v, tc.req)
			check(t, got, tc.want)
			if got.Restore != tc.restore {
				t.Fatalf("restore %d, want %d", got.Restore, tc.restore)
			}
			if a := actions(tc.v)["rollback"]; tc.req == (api.RollbackRequest{}) && (a.Allowed != got.Allowed || a.Reason != got.Reason || a.Restore != got.Restore) {
				t.Fatalf("status action %+v differs from the decision %+v", a, got)
			}
		})
	}
}

// TestForcedRetirementStopsLaunchedReplicas: a retirement forced past a
// failing on_retire hook still stops the old pool's replicas the agents
// started (cutover started them), as replicas no pool holds.
func TestForcedRetirementStopsLaunchedReplicas(t *testing.T) {
	l := &fakeLauncher{}
	f := newFx(t, func(o *Options) {
		o.Launcher = l
		blue := o.Pools["blue"]
		blue.Launched = []LaunchedReplica{{Agent: "gpu-a", ID: "old", URL: blue.Replicas[0]}}
		o.Pools["blue"] = blue
	})
	f.hooks.setFail("on_retire", true)
	f.promoteNew()
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseRetiring)
	f.step()
	if d := f.latest(); d.Phase != "retiring" || d.RetireAttempts != 1 {
		t.Fatalf("after a failing on_retire hook: %+v", d)
	}
	l.mu.Lock()
	before := len(l.stopped)
	l.mu.Unlock()
	if before != 0 {
		t.Fatalf("stopped %d replicas although the hook failed", before)
	}
	d, err := f.c.Retire(f.ctx, "op", api.RetireRequest{Force: true})
	if err != nil || d.Phase != "completed" {
		t.Fatalf("forced retirement: %+v %v", d, err)
	}
	f.step()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Equal(l.stopped, []string{"gpu-a/old"}) {
		t.Fatalf("stopped %v, want [gpu-a/old]", l.stopped)
	}
}

// TestBackgroundRestoreRetriesAndGivesUp: the background restore after a
// rollback with now retries a failed launch with backoff (recorded), and
// gives up once the pool is no longer live.
func TestBackgroundRestoreRetriesAndGivesUp(t *testing.T) {
	f, l := promotedShortOfGPUs(t, 1, "no agent has 1 free GPU(s)")
	if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{Now: true}); err != nil {
		t.Fatal(err)
	}
	f.settle()
	if ev := f.lastEvent("restore_failed"); !strings.Contains(ev.Reason, "no agent has 1 free GPU(s)") || !strings.Contains(ev.Reason, "next try in 5s") {
		t.Fatalf("restore_failed event %q", ev.Reason)
	}
	f.step() // within the backoff: no new try
	f.c.shrinks.bg.Wait()
	if n := len(f.events()); f.lastEvent("restore_failed").Revision != f.events()[n-1].Revision {
		t.Fatalf("tried again within the backoff: %+v", f.events()[n-1])
	}
	// Green goes live again (forced: it holds the rolled-back version):
	// blue is no longer live, so its restore is given up.
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(6 * time.Second)
	f.settle()
	if ev := f.lastEvent("restore"); !strings.Contains(ev.Reason, "blue not brought back to full size: it is no longer live") {
		t.Fatalf("restore event %q", ev.Reason)
	}
	if launches, _ := l.state(); len(launches) != 0 {
		t.Fatalf("launched %v", launches)
	}
}

// TestRetentionShrinkRestoreFails: a rollback whose restore cannot start
// the missing replicas, or whose started replicas never serve, is refused
// (502 restore_failed, naming --now) and nothing switches.
func TestRetentionShrinkRestoreFails(t *testing.T) {
	a, b := "http://127.0.0.1:11", "http://127.0.0.1:12"
	for _, tc := range []struct {
		name string
		set  func(*fx, *countLauncher)
		want string
	}{
		{"launch fails", func(_ *fx, l *countLauncher) { l.launchErr = errors.New("no agent has 1 free GPU(s)") }, "no agent has 1 free GPU(s)"},
		{"never serves", func(f *fx, _ *countLauncher) { f.prober.set("http://127.0.0.1:9101", errors.New("connection refused")) }, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, l := shrinkFx(t, 1, []string{a, b}, a, b)
			f.opts.ProbeTimeout = 100 * time.Millisecond
			f.restart()
			f.promoteNew()
			f.step()
			l.mu.Lock()
			tc.set(f, l)
			l.mu.Unlock()
			_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
			var r *Refusal
			if !errors.As(err, &r) || r.Code != "restore_failed" || r.Status != 502 || !strings.Contains(r.Reason, tc.want) || !strings.Contains(r.Reason, "cutover rollback --now") {
				t.Fatalf("rollback = %v, want 502 restore_failed with %q and the --now hint", err, tc.want)
			}
			if st := f.c.Status(); st.Live != "green" {
				t.Fatalf("live %s after a failed restore", st.Live)
			}
		})
	}
}

// TestRetirementStopsAgentReplicasInEveryMode: whatever the retention
// mode, the retirement runs the on_retire hooks and then stops every
// replica of the old pool that an agent started (with shrink, those the
// shrink kept; it stopped the others itself).
func TestRetirementStopsAgentReplicasInEveryMode(t *testing.T) {
	a, b := "http://127.0.0.1:11", "http://127.0.0.1:12"
	for _, mode := range []string{RetentionKeep, RetentionSleep, RetentionShrink, RetentionStop} {
		t.Run(mode, func(t *testing.T) {
			f, l := shrinkFx(t, 1, []string{a, b}, a, b)
			f.opts.Settings.RetentionMode = mode
			f.opts.ProbeTimeout = 100 * time.Millisecond
			f.restart()
			f.promoteNew()
			f.step()
			if mode != RetentionStop {
				if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			d := f.until(PhaseCompleted)
			if _, stopped := l.state(); !slices.Equal(slices.Sorted(slices.Values(stopped)), []string{a, b}) {
				t.Fatalf("stopped %v, want both replicas of blue", stopped)
			}
			ran := f.hooks.ran()
			if !slices.Contains(ran, "on_retire:blue") {
				t.Fatalf("hooks %v: on_retire did not run", ran)
			}
			if !strings.Contains(d.Reason, "stopped through the agents") {
				t.Fatalf("completed: %s", d.Reason)
			}
		})
	}
}

// TestRetentionShrinkAbortNow: an abort after the promotion is a rollback,
// and with now it switches at once onto the replicas the shrunk pool has
// left, as rollback --now does (a regression: abort had no now, so it
// always waited for the restore, past the CLI's timeout).
func TestRetentionShrinkAbortNow(t *testing.T) {
	f, l := shrinkFx(t, 1, []string{"http://127.0.0.1:11", "http://127.0.0.1:12"}, "http://127.0.0.1:11", "http://127.0.0.1:12")
	f.promoteNew()
	f.step()
	if _, stopped := l.state(); len(stopped) != 1 {
		t.Fatalf("stopped %v, want the pool shrunk to 1", stopped)
	}
	if dec := decideAbort(f.c.view(), api.AbortRequest{Now: true}); !dec.Allowed || dec.Restore != 0 || !strings.Contains(dec.Reason, "aborting it is a rollback") {
		t.Fatalf("decision with now: %+v", dec)
	}
	if _, err := f.c.Abort(f.ctx, "op", api.AbortRequest{Now: true}); err != nil {
		t.Fatal(err)
	}
	if launches, _ := l.state(); len(launches) != 0 {
		t.Fatalf("abort --now launched %v before switching", launches)
	}
	if got := blueURLs(f.c); len(got) != 1 {
		t.Fatalf("blue has %v, want the one replica left", got)
	}
	if ev := f.lastEvent("rollback"); !strings.Contains(ev.Reason, "at once (--now)") {
		t.Fatalf("rollback event %q", ev.Reason)
	}
}

// TestForcedDeployShortOfGPUsSaysWhy: a forced deploy whose launch finds
// no free GPU while the retained pool's agent replicas still hold theirs
// says so and how to free them (a regression: only "no agent has 1 free
// GPU(s)", although the force was about to free them). Nothing changes.
func TestForcedDeployShortOfGPUsSaysWhy(t *testing.T) {
	f, _ := promotedShortOfGPUs(t, 2, "no agent has 1 free GPU(s) for replica 1 of 1: not enough free GPUs")
	rev := f.c.Status().Revision
	_, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4", Force: true})
	refused(t, err, "launch_failed", "not enough free GPUs", "the retained pool blue still holds 2 agent replica(s)", "`cutover retire` first")
	if d := f.latest(); d.Phase != string(PhasePromoted) {
		t.Fatalf("the retained deployment is %s after the refused deploy", d.Phase)
	}
	if st := f.c.Status(); st.Revision > rev+2 { // the launch and its end are recorded
		t.Errorf("revision %d after the refused deploy, from %d", st.Revision, rev)
	}
}

// promotedShortOfGPUs is shrinkFx keeping keep of blue's two agent
// replicas, promoted away from and reconciled once, whose launches fail
// from then on with launchErr.
func promotedShortOfGPUs(t *testing.T, keep int, launchErr string) (*fx, *countLauncher) {
	t.Helper()
	a, b := "http://127.0.0.1:11", "http://127.0.0.1:12"
	f, l := shrinkFx(t, keep, []string{a, b}, a, b)
	f.promoteNew()
	f.step()
	l.mu.Lock()
	l.launchErr = errors.New(launchErr)
	l.mu.Unlock()
	return f, l
}
