package rollout

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestRollbackWakesReplicasLeftAsleep: a replica whose /wake_up failed
// during a rollback (the rollback went on with the one that woke) stayed
// asleep in the live pool for good: health checks pass on a sleeping vLLM
// and its completions fail. The next reconciles find it asleep, show it
// so in the status, and wake it.
func TestRollbackWakesReplicasLeftAsleep(t *testing.T) {
	_, goodURL := sleepyReplica(t, "m1", true)
	flaky, err := mockllm.New(mockllm.Config{Model: "m1", Sleep: mockllm.SleepConfig{Enabled: true, DevMode: true, WakeDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wake_up" && refuse.Load() {
			http.Error(w, "engine busy", http.StatusInternalServerError)
			return
		}
		flaky.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	f := promotedAsleep(t, flaky, nil, goodURL, ts.URL)
	refuse.Store(true)
	if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil || sw.Live != "blue" {
		t.Fatalf("rollback: %+v %v", sw, err)
	}
	if !flaky.SleepStats().Sleeping {
		t.Fatal("the replica whose wake_up failed is awake: the test shows nothing")
	}
	f.step() // finds it asleep; its wake_up still fails
	asleep := false
	for _, r := range f.c.Status().Pools["blue"].Replicas {
		if r.URL == ts.URL {
			asleep = r.Asleep
		}
	}
	if !asleep {
		t.Error("status does not show the live replica left asleep")
	}
	// Out of rotation meanwhile: its /health passes, its completions fail.
	for _, r := range f.c.Pool("blue").Replicas {
		if r.Name == ts.URL && r.Healthy() {
			t.Error("the replica left asleep still takes requests")
		}
	}
	// A controller that stops (a leader losing the lead) leaves no replica
	// out of rotation behind: it no longer tracks them.
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	f.c.Run(ctx)
	for _, r := range f.c.Pool("blue").Replicas {
		if r.Name == ts.URL && !r.Healthy() {
			t.Error("a stopped controller left the replica out of rotation")
		}
	}
	f.step() // the controller leading again takes it out again
	refuse.Store(false)
	f.step()
	if flaky.SleepStats().Sleeping {
		t.Fatal("the replica left asleep by the rollback is still asleep after the reconciles")
	}
	f.step()
	for _, r := range f.c.Status().Pools["blue"].Replicas {
		if r.Asleep {
			t.Errorf("status shows %s asleep once awake", r.URL)
		}
	}
	for _, r := range f.c.Pool("blue").Replicas {
		if r.Name == ts.URL && !r.Healthy() {
			t.Error("the replica, awake again, is still out of rotation")
		}
	}
}

// TestRollbackWakesTheRetainedPoolAtOnce: a rollback sends /wake_up to
// every replica of the retained pool at once. Each replica here answers
// its wake_up only once all of them have been asked (a barrier): woken
// one after the other (the rollback waited for the sum of the wakes, and a
// wake_timeout per hanging replica), the first wake timed out and the
// rollback was refused.
func TestRollbackWakesTheRetainedPoolAtOnce(t *testing.T) {
	const n = 3
	var asked atomic.Int32
	all := make(chan struct{})
	var urls []string
	for range n {
		m, err := mockllm.New(mockllm.Config{Model: "m1", Sleep: mockllm.SleepConfig{Enabled: true, DevMode: true}})
		if err != nil {
			t.Fatal(err)
		}
		var armed atomic.Bool
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/wake_up" && !armed.Swap(true) {
				if asked.Add(1) == n {
					close(all)
				}
				select {
				case <-all:
				case <-r.Context().Done():
					return
				}
			}
			m.ServeHTTP(w, r)
		}))
		t.Cleanup(ts.Close)
		urls = append(urls, ts.URL)
	}
	f := newFx(t, func(o *Options) {
		o.Settings.RetentionMode = RetentionSleep
		o.ProbeTimeout = time.Second
		o.Settings.WakeTimeout = time.Second
		o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: urls}
	})
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.step()
	sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
	if err != nil || sw.Live != "blue" {
		t.Fatalf("rollback: %+v %v", sw, err)
	}
	if ev := f.lastEvent("rollback"); !strings.Contains(ev.Reason, fmt.Sprintf("after waking %d replica(s) of blue", n)) {
		t.Fatalf("rollback reason %q, want all %d replicas woken", ev.Reason, n)
	}
}

// TestRollbackDoesNotWaitForAHungReplica: a rollback in retention_mode
// sleep whose retained pool has a replica that never answers /wake_up goes
// on with the replica that woke, once the straggler grace after it is
// over, instead of holding the urgent switch for the whole wake_timeout (a
// regression: one stopped replica made a rollback take 2m41s). The hung
// replica's call is cut, and the reconciles wake it once it answers.
func TestRollbackDoesNotWaitForAHungReplica(t *testing.T) {
	_, goodURL := sleepyReplica(t, "m1", true)
	hung, err := mockllm.New(mockllm.Config{Model: "m1", Sleep: mockllm.SleepConfig{Enabled: true, DevMode: true, WakeDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var hang atomic.Bool
	var once sync.Once
	cutShort, release := make(chan struct{}), make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wake_up" && hang.Load() {
			select {
			case <-r.Context().Done():
				once.Do(func() { close(cutShort) })
			case <-release:
			}
			return
		}
		hung.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(release) })
	f := promotedAsleep(t, hung, func(o *Options) {
		o.Settings.WakeTimeout = time.Hour // never reached by a passing test
		o.WakeStragglerGrace = 100 * time.Millisecond
	}, goodURL, ts.URL)
	hang.Store(true)
	type result struct {
		sw  api.SwitchResult
		err error
	}
	got := make(chan result, 1)
	go func() {
		sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
		got <- result{sw, err}
	}()
	var res result
	select {
	case res = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the rollback still waits for the hung replica")
	}
	if res.err != nil || res.sw.Live != "blue" {
		t.Fatalf("rollback: %+v %v", res.sw, res.err)
	}
	if ev := f.lastEvent("rollback"); !strings.Contains(ev.Reason, "after waking 1 replica(s) of blue") {
		t.Errorf("rollback reason %q, want the one replica that woke", ev.Reason)
	}
	select {
	case <-cutShort:
	case <-time.After(30 * time.Second):
		t.Error("the hung replica's /wake_up was not cut short")
	}
	hang.Store(false)
	f.step() // the reconcile finds it asleep and wakes it
	if hung.SleepStats().Sleeping {
		t.Error("the reconciles did not wake the replica the rollback left")
	}
}

// promotedAsleep is a controller in retention_mode sleep whose blue pool
// (replicas; m serves behind one of them) was promoted away from and put
// to sleep. tune, when set, changes the options further.
func promotedAsleep(t *testing.T, m *mockllm.Server, tune func(*Options), replicas ...string) *fx {
	t.Helper()
	f := promotedSleepMode(t, tune, replicas...)
	if !m.SleepStats().Sleeping {
		t.Fatal("the retained replica is not asleep")
	}
	return f
}

// promotedSleepMode is a controller in retention_mode sleep whose blue
// pool (replicas) was promoted away from, one reconcile later.
func promotedSleepMode(t *testing.T, tune func(*Options), replicas ...string) *fx {
	t.Helper()
	f := newFx(t, func(o *Options) {
		o.Settings.RetentionMode = RetentionSleep
		o.ProbeTimeout = 2 * time.Second
		o.Pools["blue"] = PoolSpec{Model: "m1", Replicas: replicas}
		if tune != nil {
			tune(o)
		}
	})
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.step()
	return f
}

// TestRetentionSleepNoneCanSleep: when no replica of the retained pool has
// sleep mode, the note says the pool is kept awake, not "asleep (0
// replicas)" (a regression).
func TestRetentionSleepNoneCanSleep(t *testing.T) {
	_, a := sleepyReplica(t, "m1", false)
	_, b := sleepyReplica(t, "m1", false)
	f := promotedSleepMode(t, nil, a, b)
	if w := f.latest().Waiting; !strings.Contains(w, "retained pool blue kept awake until") || strings.Contains(w, "asleep") {
		t.Fatalf("note %q", w)
	}
}
