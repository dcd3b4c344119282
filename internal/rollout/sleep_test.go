package rollout

import (
	"maps"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// sleepyReplica serves a simulated vLLM replica of model m; dev enables
// the sleep-mode routes (VLLM_SERVER_DEV_MODE=1).
func sleepyReplica(t *testing.T, m string, dev bool) (*mockllm.Server, string) {
	t.Helper()
	s, err := mockllm.New(mockllm.Config{Model: m, Sleep: mockllm.SleepConfig{Enabled: true, DevMode: dev, WakeDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func TestRetentionModeSleep(t *testing.T) {
	for _, mode := range []string{RetentionKeep, RetentionSleep} {
		t.Run(mode, func(t *testing.T) {
			sleepy, sleepyURL := sleepyReplica(t, "m1", true)
			plain, plainURL := sleepyReplica(t, "m1", false)
			f := newFx(t, func(o *Options) {
				o.Settings.RetentionMode = mode
				o.ProbeTimeout = 5 * time.Second
				o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: []string{sleepyURL, plainURL}}
			})
			f.deploy(false)
			f.until(PhaseReady)
			if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
				t.Fatal(err)
			}
			f.step()
			d := f.latest()
			if got := sleepy.SleepStats().Sleeping; got != (mode == RetentionSleep) {
				t.Fatalf("retained replica with sleep mode asleep = %v in mode %s", got, mode)
			}
			if plain.SleepStats().Sleeping {
				t.Fatal("replica without the dev routes asleep")
			}
			if mode == RetentionSleep && (!strings.Contains(d.Waiting, "retained pool blue asleep (1 replicas") ||
				!strings.Contains(d.Waiting, "kept awake: "+plainURL+" (no /sleep")) {
				t.Fatalf("status waiting %q, want the pool asleep and the replica kept awake", d.Waiting)
			}
			for _, r := range f.c.Status().Pools["blue"].Replicas {
				if want := mode == RetentionSleep && r.URL == sleepyURL; r.Asleep != want {
					t.Fatalf("status replica %s asleep=%v in mode %s", r.URL, r.Asleep, mode)
				}
			}
			f.step() // a second reconcile sends nothing new
			sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
			if err != nil || sw.Live != "blue" {
				t.Fatalf("rollback: %+v %v", sw, err)
			}
			if sleepy.SleepStats().Sleeping {
				t.Fatal("rolled back onto a sleeping replica")
			}
			for _, r := range f.c.Status().Pools["blue"].Replicas {
				if r.Asleep {
					t.Fatalf("status replica %s asleep after the rollback", r.URL)
				}
			}
			ev := f.lastEvent("rollback")
			if woke := strings.Contains(ev.Reason, "after waking 1 replica(s) of blue in "); woke != (mode == RetentionSleep) {
				t.Fatalf("rollback reason %q (mode %s)", ev.Reason, mode)
			}
		})
	}
}

func TestRetentionSleepRollbackWake(t *testing.T) {
	_, sleepyURL := sleepyReplica(t, "m1", true)
	for _, c := range []struct {
		name     string
		replicas []string
		refused  bool
	}{
		// One replica wakes, one cannot be reached: the rollback goes on
		// with the one that woke.
		{"one of two wakes", []string{sleepyURL, "http://127.0.0.1:1"}, false},
		{"none wakes", []string{"http://127.0.0.1:1"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFx(t, func(o *Options) {
				o.Settings.RetentionMode = RetentionSleep
				o.ProbeTimeout = 2 * time.Second
				o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: c.replicas}
			})
			f.deploy(false)
			f.until(PhaseReady)
			if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
				t.Fatal(err)
			}
			f.step()
			sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
			if c.refused {
				refused(t, err, "pool_cannot_serve", "did not wake", "green stays live")
				return
			}
			if err != nil || sw.Live != "blue" {
				t.Fatalf("rollback: %+v %v", sw, err)
			}
		})
	}
}

// TestRetentionSleepNeverAfterWake: a reconcile that observed the old pool
// retained (before a rollback) must not put it to sleep once the rollback
// woke it and made it live.
func TestRetentionSleepNeverAfterWake(t *testing.T) {
	sleepy, sleepyURL := sleepyReplica(t, "m1", true)
	f := newFx(t, func(o *Options) {
		o.Settings.RetentionMode = RetentionSleep
		o.ProbeTimeout = 2 * time.Second
		o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: []string{sleepyURL}}
	})
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	// What a reconcile running right now would have observed.
	st, _, pools := f.c.snapshot()
	stale := st.active()
	if stale == nil || stale.Phase != PhasePromoted {
		t.Fatalf("no promoted deployment: %+v", stale)
	}
	if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil || sw.Live != "blue" {
		t.Fatalf("rollback: %+v %v", sw, err)
	}
	f.c.keepRetainedAsleep(f.ctx, stale, pools)
	if sleepy.SleepStats().Sleeping {
		t.Fatal("the live pool was put to sleep by a reconcile that observed it retained")
	}
}

// TestRetentionSleepSurvivesRestart: the sleep state is not persisted; a
// restarted controller asks again (a no-op for a sleeping replica), shows
// the pool asleep, and its rollback wakes it.
func TestRetentionSleepSurvivesRestart(t *testing.T) {
	sleepy, sleepyURL := sleepyReplica(t, "m1", true)
	f := promotedAsleep(t, sleepy, nil, sleepyURL)
	f.restart()
	f.step()
	if r := f.c.Status().Pools["blue"].Replicas; len(r) != 1 || !r[0].Asleep {
		t.Fatalf("after a restart the status shows %+v, want the replica asleep", r)
	}
	if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil || sw.Live != "blue" {
		t.Fatalf("rollback after a restart: %+v %v", sw, err)
	}
	if sleepy.SleepStats().Sleeping {
		t.Fatal("rolled back onto a sleeping replica after a restart")
	}
}

// TestRetentionSleepFollowerShowsAsleep: in a fleet, a gateway other than
// the one that put the retained pool to sleep shows its replicas asleep
// too (the record names them), and the one kept awake awake; after the
// rollback none. Regression: only the gateway that sent /sleep knew, so
// the others' status and dashboard showed a sleeping pool healthy and
// serving, and their GPU accounting counted it awake.
func TestRetentionSleepFollowerShowsAsleep(t *testing.T) {
	_, sleepyURL := sleepyReplica(t, "m1", true)
	_, plainURL := sleepyReplica(t, "m1", false)
	f := newFx(t, func(o *Options) {
		o.Settings.RetentionMode = RetentionSleep
		o.ProbeTimeout = 5 * time.Second
		o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: []string{sleepyURL, plainURL}}
	})
	opts := f.opts
	opts.Applier = &recorder{}
	follower, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	follow := func() {
		t.Helper()
		rec, err := f.st.Get(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := follower.Follow(f.ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	asleep := func(c *Controller) map[string]bool {
		out := map[string]bool{}
		for _, r := range c.Status().Pools["blue"].Replicas {
			out[r.URL] = r.Asleep
		}
		return out
	}
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.step()
	follow()
	want := map[string]bool{sleepyURL: true, plainURL: false}
	if got := asleep(f.c); !maps.Equal(got, want) {
		t.Fatalf("the gateway that put blue to sleep shows %v, want %v", got, want)
	}
	if got := asleep(follower); !maps.Equal(got, want) {
		t.Fatalf("the other gateway shows %v, want %v", got, want)
	}
	if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil {
		t.Fatal(err)
	}
	follow()
	want = map[string]bool{sleepyURL: false, plainURL: false}
	if got := asleep(follower); !maps.Equal(got, want) {
		t.Fatalf("the other gateway after the rollback shows %v, want %v", got, want)
	}
}
