package rollout

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
)

// TestCheckRevisionSinceLastTransition: a guard taken at any revision since
// the last commit that recorded a history event (GuardRevision) holds;
// one from before it does not; a state without GuardRevision needs the
// exact revision.
func TestCheckRevisionSinceLastTransition(t *testing.T) {
	guarded := func(g int64) View {
		v := scene("blue")
		v.State.GuardRevision = g
		return v
	}
	for _, tc := range []struct {
		name     string
		v        View
		expected int64
		ok       bool
	}{
		{"exact", guarded(5), 7, true},
		{"at the last transition", guarded(5), 5, true},
		{"between", guarded(5), 6, true},
		{"before the last transition", guarded(5), 4, false},
		{"ahead of the state", guarded(5), 8, false},
		{"no guard revision recorded", guarded(0), 6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := checkRevision(tc.v, tc.expected)
			if ok != tc.ok || (!ok && d.Code != "revision_mismatch") {
				t.Fatalf("checkRevision(guard %d, revision %d, expected %d) = %v %+v, want %v",
					tc.v.State.GuardRevision, tc.v.Revision, tc.expected, ok, d, tc.ok)
			}
		})
	}
}

// TestGuardHoldsWhileAHookStarts: a hook that starts records its process
// group, a commit that moves the revision; a switch guarded with the
// revision seen before it is still done (a regression: it was refused
// with revision_mismatch though nothing an operator sees had changed).
// The switch itself then moves the guard.
func TestGuardHoldsWhileAHookStarts(t *testing.T) {
	o, st := boltOptions(t, t.TempDir(), nil)
	defer st.Close()
	c := mustStart(t, o)
	ctx := context.Background()
	seen := c.Status().Revision

	fifo := filepath.Join(t.TempDir(), "release")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan hook.Outcome, 1)
	d := &Deployment{ID: "d-1", Pool: "green", Model: "m2"}
	go func() {
		done <- c.runTracked(ctx, d, hook.Spec{Command: []string{"cat", fifo}, Timeout: time.Minute},
			hook.Payload{Event: "on_deploy", Deployment: d.ID, RunID: "d-1.on_deploy.test"})
	}()
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		_ = f.Close()
		<-done
	}
	defer release()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if s, _, _ := c.snapshot(); len(s.RunningHooks) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hook's start was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if now := c.Status().Revision; now != seen+1 {
		t.Fatalf("revision %d after the hook started, want %d", now, seen+1)
	}
	sw, err := c.Promote(ctx, "op", api.PromoteRequest{ExpectedRevision: seen})
	if err != nil {
		t.Fatalf("promote guarded with revision %d, seen before the hook started: %v", seen, err)
	}
	_, err = c.Rollback(ctx, "other", api.RollbackRequest{ExpectedRevision: seen})
	refused(t, err, "revision_mismatch")
	release()
	// Clearing the record is bookkeeping too: the switch's revision
	// still guards.
	c.forgetRunning(ctx, "d-1.on_deploy.test")
	if s, rev, _ := c.snapshot(); len(s.RunningHooks) != 0 || rev != sw.Revision+1 {
		t.Fatalf("after clearing the record: revision %d (promote's %d), running %+v", rev, sw.Revision, s.RunningHooks)
	}
	if _, err := c.Rollback(ctx, "op", api.RollbackRequest{ExpectedRevision: sw.Revision}); err != nil {
		t.Fatalf("rollback guarded with the promote's revision %d: %v", sw.Revision, err)
	}
}
