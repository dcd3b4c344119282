package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
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
