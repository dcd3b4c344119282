package rollout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
)

// TestStatusSaysTheStateCannotBeSaved: while writes of the state fail
// (a full state_dir), status says so, with the error and since when, and
// the deployment stays where it was; the first write that succeeds
// clears it. Regression: status showed the deployment warming, waiting
// for its replicas, while only the log said its transition could not be
// saved.
func TestStatusSaysTheStateCannotBeSaved(t *testing.T) {
	f := newFx(t, nil)
	f.deploy(false)
	f.st.mu.Lock()
	f.st.failPut = errors.New("write /var/lib/cutover/cutover.db: no space left on device")
	f.st.mu.Unlock()
	// An admin call that cannot be written tells its caller; nothing waits.
	if _, err := f.c.Abort(f.ctx, "op", api.AbortRequest{}); err == nil {
		t.Fatal("abort written to a store that fails every write")
	}
	if s := f.c.Status(); s.SaveError != nil {
		t.Fatalf("save_error %+v after a refused admin call, want none", s.SaveError)
	}
	f.step()
	s := f.c.Status()
	if s.SaveError == nil || !strings.Contains(s.SaveError.Error, "no space left on device") || s.SaveError.Since.IsZero() {
		t.Fatalf("status save_error %+v, want the failed write and since when", s.SaveError)
	}
	if s.Deployment == nil || s.Deployment.Phase != string(PhaseWarming) {
		t.Fatalf("deployment %+v, want it still warming", s.Deployment)
	}
	since := s.SaveError.Since
	f.clk.Advance(time.Second)
	f.step()
	if s := f.c.Status(); s.SaveError == nil || !s.SaveError.Since.Equal(since) {
		t.Fatalf("save_error after a second failure %+v, want the first failure's time %s", s.SaveError, since)
	}
	f.st.mu.Lock()
	f.st.failPut = nil
	f.st.mu.Unlock()
	f.until(PhaseReady)
	if s := f.c.Status(); s.SaveError != nil {
		t.Fatalf("save_error %+v after a write succeeded, want none", s.SaveError)
	}
}

// TestRetireOutcomeNotSavedBacksOff: on a disk with room for small writes
// only, a retirement whose outcome cannot be saved does not run on_retire
// again every tick, and status keeps saying the state is not saved
// (before: 55 runs in 55 s, and save_error cleared by the small writes
// that recorded each run).
func TestRetireOutcomeNotSavedBacksOff(t *testing.T) {
	// A real command hook: its run is recorded in the state (a small
	// write, without events) before its outcome (with events).
	ran := filepath.Join(t.TempDir(), "runs")
	f := newFx(t, func(o *Options) {
		o.HookRunner = nil
		o.Hooks = map[string][]hook.Spec{"on_retire": {{Command: []string{"sh", "-c", "echo x >> " + ran + "; exit 3"}}}}
	})
	f.promoteDeployment()
	f.clk.Advance(time.Hour)
	f.until(PhaseRetiring)
	f.st.mu.Lock()
	f.st.failEvents = errors.New("write /var/lib/cutover/cutover.db: no space left on device")
	f.st.mu.Unlock()
	runs := func() int {
		b, _ := os.ReadFile(ran)
		return strings.Count(string(b), "x")
	}
	f.clk.Advance(10 * time.Minute) // past any backoff so far
	before := runs()
	for range 4 {
		f.step()
		f.clk.Advance(time.Second)
		if s := f.c.Status(); s.SaveError == nil {
			t.Fatalf("save_error none while the outcome cannot be written (on_retire runs %d)", runs()-before)
		}
	}
	if n := runs() - before; n != 1 {
		t.Fatalf("on_retire ran %d times in 4 s with its outcome unsaved, want 1 (then the backoff)", n)
	}
	if d := f.latest(); !strings.Contains(d.Waiting, "could not be saved") {
		t.Fatalf("waiting %q, want why the retirement waits", d.Waiting)
	}
	f.st.mu.Lock()
	f.st.failEvents = nil
	f.st.mu.Unlock()
	f.clk.Advance(time.Minute)
	f.step()
	if s := f.c.Status(); s.SaveError != nil || s.Deployment.RetireAttempts == 0 {
		t.Fatalf("after the disk has room: save_error %+v, attempts %d", s.SaveError, s.Deployment.RetireAttempts)
	}
}
