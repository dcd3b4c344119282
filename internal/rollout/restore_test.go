package rollout

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// keyLauncher records the key and slots each launch is asked with and
// answers one replica per slot (placing n when given none), and records
// the stops.
type keyLauncher struct {
	mu      sync.Mutex
	keys    []string
	slots   [][]LaunchSlot
	stopped []string
}

func (l *keyLauncher) Launch(_ context.Context, key, _ string, n int, slots []LaunchSlot, progress func([]LaunchSlot)) ([]LaunchedReplica, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys, l.slots = append(l.keys, key), append(l.slots, slices.Clone(slots))
	for i := len(slots); i < n; i++ {
		slots = append(slots, LaunchSlot{Agent: "gpu-a", Key: fmt.Sprintf("%s.%d", key, i), State: SlotAsked})
	}
	var out []LaunchedReplica
	for i := range slots {
		if slots[i].ID == "" {
			slots[i].ID = "id-" + slots[i].Key
		}
		slots[i].URL, slots[i].GPUs, slots[i].State = fmt.Sprintf("http://127.0.0.1:%d", 7700+i), 1, SlotReady
		out = append(out, LaunchedReplica{Agent: slots[i].Agent, ID: slots[i].ID, URL: slots[i].URL, GPUs: 1})
	}
	progress(slots)
	return out, nil
}

func (l *keyLauncher) Stop(_ context.Context, rs []LaunchedReplica) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rs {
		l.stopped = append(l.stopped, r.ID)
	}
	return nil
}

// TestRestoreCarriedOnAfterRestart: a restore a previous controller left
// in the state (killed while the replicas loaded) is carried on with the
// persisted key and slots — the agent asked again for the replica it
// already started, none placed anew — and its replicas are adopted into
// the pool that wanted them, or stopped when no pool does any more; the
// state keeps no restore afterwards.
func TestRestoreCarriedOnAfterRestart(t *testing.T) {
	a, b := "http://127.0.0.1:11", "http://127.0.0.1:12"
	slot := LaunchSlot{Agent: "gpu-a", Key: "restore-left.0", ID: "x1", URL: "http://127.0.0.1:7700", GPUs: 1, State: SlotStarted}
	for _, tc := range []struct {
		name      string
		now       bool // the rollback --now happened; else none
		later     bool // the restore left is the background one
		wantPool  bool // adopted into blue; else stopped
		wantEvent string
	}{
		{"rollback's restore: the retained pool keeps it", false, false, true, "did not finish (the controller restarted)"},
		{"background restore: the live pool gets it", true, true, true, "in the background"},
		{"background restore no deployment waits for: stopped", false, true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &keyLauncher{}
			f := newFx(t, func(o *Options) {
				o.Launcher = l
				o.Settings.RetentionMode, o.Settings.ShrinkTo = RetentionShrink, 1
				o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: []string{a, b}, Launched: []LaunchedReplica{
					{Agent: "gpu-a", ID: "b1", URL: a, GPUs: 1}, {Agent: "gpu-a", ID: "b2", URL: b, GPUs: 1}}}
			})
			f.promoteNew()
			f.step() // blue shrunk to 1
			if got := blueURLs(f.c); len(got) != 1 {
				t.Fatalf("blue after the shrink = %v", got)
			}
			if tc.now {
				if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{Now: true}); err != nil {
					t.Fatal(err)
				}
			}
			id := f.latest().ID
			left := RestoreState{Key: "restore-left", Deployment: id, Pool: "blue", Model: "m1", N: 1, Later: tc.later, Since: t0, Slots: []LaunchSlot{slot}}
			f.c.tmu.Lock()
			if err := f.c.commit(f.ctx, "controller", func(s *State) ([]event, error) {
				s.Restores = append(slices.Clone(s.Restores), left)
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			f.c.tmu.Unlock()
			f.restart() // the controller that started it is gone
			if _, gpus := usageOf(f.c.Status().Cost, "blue", map[bool]string{true: GPULive, false: GPURetainedAwake}[tc.now]); gpus != 2 {
				t.Fatalf("the restore's started replica holds no GPU in the accounting: %+v", f.c.Status().Cost)
			}
			f.c.resumeRestores(f.ctx)
			f.settle()
			l.mu.Lock()
			keys, slots, stopped := slices.Clone(l.keys), slices.Clone(l.slots), slices.Clone(l.stopped)
			l.mu.Unlock()
			if tc.wantPool {
				if len(keys) < 1 || keys[0] != "restore-left" || len(slots[0]) != 1 || slots[0][0] != slot {
					t.Fatalf("carried on with keys %v slots %+v, want the persisted ones", keys, slots)
				}
				if got := blueURLs(f.c); !slices.Contains(got, slot.URL) || len(got) != 2 {
					t.Fatalf("blue = %v, want it back to 2 with the restored %s", got, slot.URL)
				}
				if ev := f.lastEvent("restore"); !strings.Contains(ev.Reason, tc.wantEvent) {
					t.Fatalf("restore event %+v, want %q", ev, tc.wantEvent)
				}
			} else {
				if len(keys) != 0 || !slices.Contains(stopped, "x1") || slices.Contains(blueURLs(f.c), slot.URL) {
					t.Fatalf("launches %v, stopped %v, blue %v: want x1 stopped, nothing launched", keys, stopped, blueURLs(f.c))
				}
			}
			st, _, _ := f.c.snapshot()
			if len(st.Restores) != 0 || len(st.Orphans) != 0 {
				t.Fatalf("state after: restores %+v, orphans %+v; want none", st.Restores, st.Orphans)
			}
			if ids := launchedIDs(f.c.specOf(st, "blue").Launched); slices.Contains(stopped, "x1") == slices.Contains(ids, "x1") {
				t.Fatalf("x1 stopped %v and held by blue %v", stopped, ids)
			}
		})
	}
}

func launchedIDs(l []LaunchedReplica) []string {
	var out []string
	for _, r := range l {
		out = append(out, r.ID)
	}
	return out
}

// TestStatusShowsRestoresInProgress: a restore in progress is in the
// status (pool, deployment, replicas wanted and each slot's state) while
// the state holds it, like a launch, and gone once it is dropped.
func TestStatusShowsRestoresInProgress(t *testing.T) {
	f := newFx(t, nil)
	f.promoteNew()
	id := f.latest().ID
	if got := f.c.Status().Restores; got != nil {
		t.Fatalf("restores before any = %+v", got)
	}
	rs := RestoreState{Key: "restore-x", Deployment: id, Pool: "blue", Model: "m1", N: 2, Later: true, Since: t0, Slots: []LaunchSlot{
		{Agent: "gpu-a", Key: "restore-x.0", ID: "r1", URL: "http://127.0.0.1:7700", GPUs: 1, State: SlotReady},
		{Agent: "gpu-b", Key: "restore-x.1", State: SlotAsked},
	}}
	if err := f.c.recordRestore(f.ctx, rs, false); err != nil {
		t.Fatal(err)
	}
	want := []api.Restore{{Pool: "blue", Deployment: id, Model: "m1", Since: t0, Wanted: 2, Background: true, Replicas: []api.LaunchReplica{
		{Agent: "gpu-a", ID: "r1", URL: "http://127.0.0.1:7700", GPUs: 1, State: SlotReady},
		{Agent: "gpu-b", State: SlotAsked},
	}}}
	if got := f.c.Status().Restores; !reflect.DeepEqual(got, want) {
		t.Fatalf("restores in the status = %+v, want %+v", got, want)
	}
	f.c.endRestore(f.ctx, "restore-x", false)
	if got := f.c.Status().Restores; got != nil {
		t.Fatalf("restores after it ended = %+v", got)
	}
}
