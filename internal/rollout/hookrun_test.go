//go:build linux

package rollout

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/store"
)

// withPendingHook commits a finished deployment d-1 whose on_deploy hooks
// must still run, as pend records them, plus whatever more does.
func withPendingHook(t *testing.T, c *Controller, more func(s *State, d *Deployment)) *Deployment {
	t.Helper()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	var out *Deployment
	err := c.commit(context.Background(), "test", func(s *State) ([]event, error) {
		d := abortedDeployment("d-1")
		c.pend(d, "on_deploy")
		s.Deployments = append(s.Deployments, d)
		if more != nil {
			more(s, d)
		}
		out = d.clone()
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHookRunRecordsItsProcessGroup: while a command hook runs, the state
// records its process group under the run id it was pended with; the
// outcome clears the record.
func TestHookRunRecordsItsProcessGroup(t *testing.T) {
	tmp := t.TempDir()
	release := filepath.Join(tmp, "release")
	o, st := boltOptions(t, t.TempDir(), nil)
	defer st.Close()
	o.Hooks = map[string][]hook.Spec{"on_deploy": {{Command: []string{"sh", "-c",
		`echo "$CUTOVER_HOOK_RUN_ID" > ` + filepath.Join(tmp, "run-id") + `; while [ ! -e ` + release + ` ]; do sleep 0.02; done`}}}}
	c := mustStart(t, o)
	d := withPendingHook(t, c, nil)
	if len(d.PendingRunIDs) != 1 || !strings.HasPrefix(d.PendingRunIDs[0], "d-1.on_deploy.r") {
		t.Fatalf("pending run ids %q, want one d-1.on_deploy.r<revision>", d.PendingRunIDs)
	}
	done := make(chan struct{})
	go func() { c.Reconcile(context.Background()); close(done) }()
	var running RunningHook
	for i := 0; ; i++ {
		if s, _, _ := c.snapshot(); len(s.RunningHooks) == 1 {
			running = s.RunningHooks[0]
			break
		}
		if i == 3000 {
			t.Fatal("the running hook was never recorded in the state")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if running.RunID != d.PendingRunIDs[0] || running.PGID <= 1 || running.Event != "on_deploy" || running.Deployment != "d-1" {
		t.Errorf("recorded %+v, want run %s of d-1's on_deploy with its process group", running, d.PendingRunIDs[0])
	}
	if err := syscall.Kill(-running.PGID, 0); err != nil {
		t.Errorf("recorded process group %d: %v", running.PGID, err)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	<-done
	s, _, _ := c.snapshot()
	if len(s.RunningHooks) != 0 || len(s.find("d-1").PendingHooks) != 0 || len(s.find("d-1").PendingRunIDs) != 0 {
		t.Errorf("after the hook: running %+v, pending %q %q; want all cleared", s.RunningHooks, s.find("d-1").PendingHooks, s.find("d-1").PendingRunIDs)
	}
	if b, _ := os.ReadFile(filepath.Join(tmp, "run-id")); strings.TrimSpace(string(b)) != d.PendingRunIDs[0] {
		t.Errorf("hook saw CUTOVER_HOOK_RUN_ID=%q, want %q", b, d.PendingRunIDs[0])
	}
}

// TestStartEndsLeftoverHook: a hook still running from a cutover that was
// killed -9 is ended at the next start, before its re-run, which gets the
// same CUTOVER_HOOK_RUN_ID (a regression: the re-run overlapped the
// leftover by 10 s).
func TestStartEndsLeftoverHook(t *testing.T) {
	dir, tmp := t.TempDir(), t.TempDir()
	o, st := boltOptions(t, dir, nil)
	o.Hooks = map[string][]hook.Spec{"on_deploy": {{Command: []string{"true"}}}}
	c := mustStart(t, o)
	var runID string
	// The leftover: the hook as the killed cutover started it.
	leftover := exec.Command("sleep", "60")
	leftover.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	withPendingHook(t, c, func(s *State, d *Deployment) {
		runID = d.PendingRunIDs[0]
		leftover.Env = append(os.Environ(), hook.RunIDEnv+"="+runID)
		if err := leftover.Start(); err != nil {
			t.Fatal(err)
		}
		s.RunningHooks = []RunningHook{{RunID: runID, Deployment: d.ID, Event: "on_deploy", Hook: "sleep 60", PGID: leftover.Process.Pid, Started: time.Now().UTC()}}
	})
	ended := make(chan error, 1)
	go func() { ended <- leftover.Wait() }()
	t.Cleanup(func() { _ = leftover.Process.Kill() })
	st.Close()

	seen := filepath.Join(tmp, "seen")
	o, st = boltOptions(t, dir, nil)
	defer st.Close()
	o.Hooks = map[string][]hook.Spec{"on_deploy": {{Command: []string{"sh", "-c", `echo "$CUTOVER_HOOK_RUN_ID" > ` + seen}}}}
	c = mustStart(t, o)
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the leftover hook still runs after the start")
	}
	if s, _, _ := c.snapshot(); len(s.RunningHooks) != 0 {
		t.Errorf("running hooks after the start: %+v", s.RunningHooks)
	}
	h, err := st.History(context.Background(), 1)
	var ev event
	if err != nil || len(h) != 1 || json.Unmarshal(h[0], &ev) != nil || ev.Action != "hook_leftover" || !strings.Contains(ev.Reason, runID) {
		t.Errorf("last history event %s (%v), want hook_leftover naming run %s", h, err, runID)
	}
	c.Reconcile(context.Background())
	if b, _ := os.ReadFile(seen); strings.TrimSpace(string(b)) != runID {
		t.Errorf("the re-run saw CUTOVER_HOOK_RUN_ID=%q, want the leftover's %q", b, runID)
	}
}

// TestBeforePromoteHookRecordsItsProcessGroup: a before_promote hook,
// run inside the promote request, is recorded as running like the other
// hooks (a regression: it was not, so a cutover killed -9 while it ran
// left it running unseen after the restart, and the next promote ran it
// a second time alongside it); the outcome clears the record.
func TestBeforePromoteHookRecordsItsProcessGroup(t *testing.T) {
	tmp := t.TempDir()
	release := filepath.Join(tmp, "release")
	o, st := boltOptions(t, t.TempDir(), nil)
	defer st.Close()
	o.Hooks = map[string][]hook.Spec{"before_promote": {{Command: []string{"sh", "-c",
		`while [ ! -e ` + release + ` ]; do sleep 0.02; done`}}}}
	c := mustStart(t, o)
	c.tmu.Lock()
	err := c.commit(context.Background(), "test", func(s *State) ([]event, error) {
		d := &Deployment{ID: "d-1", Pool: "green", Model: "m2", Replicas: []string{"http://127.0.0.1:2"}, From: "blue", FromModel: "m1"}
		d.enter(PhaseReady, time.Now().UTC(), "validation passed", time.Time{})
		s.Deployments = append(s.Deployments, d)
		return nil, nil
	})
	c.tmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Promote(context.Background(), "op", api.PromoteRequest{})
		done <- err
	}()
	var running RunningHook
	for i := 0; ; i++ {
		if s, _, _ := c.snapshot(); len(s.RunningHooks) == 1 {
			running = s.RunningHooks[0]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("promote ended (%v) without the running before_promote hook ever being recorded", err)
		default:
		}
		if i == 3000 {
			_ = os.WriteFile(release, nil, 0o600)
			t.Fatal("the running before_promote hook was never recorded in the state")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if running.Event != "before_promote" || running.Deployment != "d-1" || running.PGID <= 1 || !strings.HasPrefix(running.RunID, "d-1.before_promote.r") {
		t.Errorf("recorded %+v, want d-1's before_promote run with its process group", running)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("promote: %v", err)
	}
	if s, _, _ := c.snapshot(); len(s.RunningHooks) != 0 || s.Live != "green" {
		t.Errorf("after the promote: live %s, running hooks %+v; want green and none", s.Live, s.RunningHooks)
	}
}

// conflictOnce is a bbolt store whose Put fails once with a conflict when
// armed, as a write by another gateway would make it.
type conflictOnce struct {
	store.Store
	armed atomic.Bool
}

func (s *conflictOnce) Put(ctx context.Context, rev int64, data []byte, h ...[]byte) error {
	if s.armed.CompareAndSwap(true, false) {
		return store.ErrConflict
	}
	return s.Store.Put(ctx, rev, data, h...)
}

// TestBeforePromoteRecordClearedWhenOutcomeNotRecorded: when the commit of
// a before_promote hook's outcome loses on the revision, the promote is
// refused and the hook's running record is cleared all the same (else the
// state would show a hook running that has ended, until the next start).
func TestBeforePromoteRecordClearedWhenOutcomeNotRecorded(t *testing.T) {
	tmp := t.TempDir()
	release := filepath.Join(tmp, "release")
	o, st := boltOptions(t, t.TempDir(), nil)
	defer st.Close()
	cs := &conflictOnce{Store: st}
	o.Store = cs
	o.Hooks = map[string][]hook.Spec{"before_promote": {{Command: []string{"sh", "-c",
		`while [ ! -e ` + release + ` ]; do sleep 0.02; done`}}}}
	c := mustStart(t, o)
	c.tmu.Lock()
	err := c.commit(context.Background(), "test", func(s *State) ([]event, error) {
		d := &Deployment{ID: "d-1", Pool: "green", Model: "m2", Replicas: []string{"http://127.0.0.1:2"}, From: "blue", FromModel: "m1"}
		d.enter(PhaseReady, time.Now().UTC(), "validation passed", time.Time{})
		s.Deployments = append(s.Deployments, d)
		return nil, nil
	})
	c.tmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Promote(context.Background(), "op", api.PromoteRequest{})
		done <- err
	}()
	for i := 0; ; i++ {
		if s, _, _ := c.snapshot(); len(s.RunningHooks) == 1 {
			break
		}
		if i == 3000 {
			_ = os.WriteFile(release, nil, 0o600)
			t.Fatal("the running before_promote hook was never recorded in the state")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cs.armed.Store(true) // the outcome's commit loses
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("promote succeeded although its outcome was not recorded")
	}
	if s, _, _ := c.snapshot(); len(s.RunningHooks) != 0 || s.Live != "blue" {
		t.Errorf("after the refused promote: live %s, running hooks %+v; want blue and none", s.Live, s.RunningHooks)
	}
	if rec, err := st.Get(context.Background()); err != nil || strings.Contains(string(rec.Data), "running_hooks") {
		t.Errorf("the stored state still records a running hook (%v): %s", err, rec.Data)
	}
}

// TestStartEndsLeftoverBeforePromoteHook: a before_promote hook left
// running by a cutover killed during a promote is ended at the next start,
// and the history says the promotion did not happen (a regression: it
// said the hook would run again, which only the next promote does).
func TestStartEndsLeftoverBeforePromoteHook(t *testing.T) {
	dir := t.TempDir()
	o, st := boltOptions(t, dir, nil)
	c := mustStart(t, o)
	runID := "d-1.before_promote.r2"
	leftover := exec.Command("sleep", "60")
	leftover.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	leftover.Env = append(os.Environ(), hook.RunIDEnv+"="+runID)
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- leftover.Wait() }()
	t.Cleanup(func() { _ = leftover.Process.Kill() })
	c.tmu.Lock()
	err := c.commit(context.Background(), "test", func(s *State) ([]event, error) {
		s.RunningHooks = []RunningHook{{RunID: runID, Deployment: "d-1", Event: "before_promote", Hook: "sleep 60", PGID: leftover.Process.Pid, Started: time.Now().UTC()}}
		return nil, nil
	})
	c.tmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	o, st = boltOptions(t, dir, nil)
	defer st.Close()
	mustStart(t, o)
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the leftover before_promote hook still runs after the start")
	}
	h, err := st.History(context.Background(), 1)
	var ev event
	if err != nil || len(h) != 1 || json.Unmarshal(h[0], &ev) != nil || ev.Action != "hook_leftover" ||
		!strings.Contains(ev.Reason, "did not happen") || strings.Contains(ev.Reason, "before it runs again") {
		t.Errorf("last history event %s (%v), want hook_leftover saying the promotion did not happen", h, err)
	}
}
