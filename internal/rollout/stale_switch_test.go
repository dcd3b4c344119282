package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/store"
)

// preflightDo is a Preflighter that runs do once, on its first call: what
// another gateway of the fleet does while this one prepares a switch.
type preflightDo struct {
	once sync.Once
	do   func()
}

func (p *preflightDo) Preflight(context.Context, *pool.Replica, string) error {
	p.once.Do(p.do)
	return nil
}

// TestSwitchOutrunByTheFleet: a rollback or abort prepared on one gateway
// while another gateway changes the state (it rolls back first, or the
// leader begins the retirement) is refused with 409 conflict when it is
// written, and nothing is switched twice (a regression: the commit
// re-applied the decision made on the old state, so three rollbacks at
// once on three gateways all answered 200, blue -> blue twice with
// on_rollback three times, and a rollback on a follower made a pool live
// after its on_retire hook had run).
func TestSwitchOutrunByTheFleet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		call   func(c *Controller, ctx context.Context) error
		meanly func(f *fx) error // the other gateway's change
	}{
		{"rollback after another gateway's rollback",
			func(c *Controller, ctx context.Context) error {
				_, err := c.Rollback(ctx, "op2", api.RollbackRequest{})
				return err
			},
			func(f *fx) error { _, err := f.c.Rollback(f.ctx, "op1", api.RollbackRequest{}); return err }},
		{"abort after another gateway's rollback",
			func(c *Controller, ctx context.Context) error {
				_, err := c.Abort(ctx, "op2", api.AbortRequest{})
				return err
			},
			func(f *fx) error { _, err := f.c.Rollback(f.ctx, "op1", api.RollbackRequest{}); return err }},
		{"rollback after the leader began the retirement",
			func(c *Controller, ctx context.Context) error {
				_, err := c.Rollback(ctx, "op2", api.RollbackRequest{})
				return err
			},
			func(f *fx) error {
				if _, err := f.c.Retire(f.ctx, "op1", api.RetireRequest{Force: true}); err != nil {
					return err
				}
				f.step() // the leader's reconcile: retiring, on_retire
				if d := f.latest(); d.Phase == string(PhasePromoted) {
					return fmt.Errorf("deployment %s still promoted after a forced retire", d.ID)
				}
				return nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, nil)
			f.deploy(false)
			f.until(PhaseReady)
			if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
				t.Fatal(err)
			}
			opts := f.opts
			opts.Applier = &recorder{}
			var other *Controller
			opts.Preflight = &preflightDo{do: func() {
				if err := tc.meanly(f); err != nil {
					t.Errorf("the other gateway's change: %v", err)
				}
				rec, err := f.st.Get(f.ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if err := other.Follow(f.ctx, rec); err != nil {
					t.Error(err)
				}
			}}
			var err error
			if other, err = New(opts); err != nil {
				t.Fatal(err)
			}
			if err := other.Start(f.ctx); err != nil {
				t.Fatal(err)
			}
			err = tc.call(other, f.ctx)
			refused(t, err, "conflict", "changed while it was prepared")
			var rollbacks int
			for _, e := range f.events() {
				if e.Action == "rollback" && e.Actor == "op2" {
					rollbacks++
				}
			}
			if rollbacks != 0 {
				t.Fatalf("the outrun call still switched (%d rollback events of op2)", rollbacks)
			}
		})
	}
}

// TestRetirementDrainsTheFleet: the retirement's drain waits for the old
// pool's requests in flight at the fleet's other gateways too (as they
// last reported), and says so; once they are gone it retires (a
// regression: the leader counted only its own, and on_retire stopped
// replicas under the other gateways' streams).
func TestRetirementDrainsTheFleet(t *testing.T) {
	var elsewhere atomic.Int64
	f := newFx(t, func(o *Options) {
		o.OthersInFlight = func(pool string) int {
			if pool != "blue" {
				return 0
			}
			return int(elsewhere.Load())
		}
	})
	f.promoteDeployment()
	f.step()
	elsewhere.Store(2)
	f.clk.Advance(time.Hour)
	f.until(PhaseRetiring)
	for range 3 {
		f.step()
	}
	d := f.latest()
	if d.Phase != string(PhaseRetiring) || !strings.Contains(d.Waiting, "2 at other gateways") {
		t.Fatalf("with 2 requests at another gateway: %s, waiting %q", d.Phase, d.Waiting)
	}
	elsewhere.Store(0)
	f.until(PhaseCompleted)
}

// TestRetirementDrainsThroughTheLoadBalancer: with a driver, clients reach
// the replicas through nginx or HAProxy, so this process counts none of
// their streams: the drain waits for the old pool's engines to hold no
// request, and, while their metrics cannot be read, until drain_timeout.
// Before, on_retire ran at once over three 15 s streams through nginx.
func TestRetirementDrainsThroughTheLoadBalancer(t *testing.T) {
	var busy atomic.Int64
	var failing atomic.Bool
	f := newFx(t, func(o *Options) {
		o.EngineBusy = func(_ context.Context, p *pool.Pool) (int, error) {
			if p.Name != "blue" {
				return 0, nil
			}
			if failing.Load() {
				return 0, errors.New("GET /metrics: connection reset")
			}
			return int(busy.Load()), nil
		}
	})
	f.promoteDeployment()
	f.step()
	busy.Store(3)
	f.clk.Advance(time.Hour)
	f.until(PhaseRetiring)
	for range 3 {
		f.step()
	}
	if d := f.latest(); d.Phase != string(PhaseRetiring) || !strings.Contains(d.Waiting, "engines hold 3 requests") {
		t.Fatalf("with 3 streams on blue's engines: %s, waiting %q", d.Phase, d.Waiting)
	}
	busy.Store(0)
	failing.Store(true)
	for range 3 {
		f.step()
	}
	if d := f.latest(); d.Phase != string(PhaseRetiring) || !strings.Contains(d.Waiting, "cannot tell") {
		t.Fatalf("with blue's metrics failing: %s, waiting %q", d.Phase, d.Waiting)
	}
	failing.Store(false)
	f.until(PhaseCompleted)
}

// promoteDeployment deploys a new version into green, waits until it is
// ready and promotes it.
func (f *fx) promoteDeployment() {
	f.t.Helper()
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		f.t.Fatal(err)
	}
}

// TestFollowRefusesAnOlderRevision: a revision older than the one held
// (etcd went back in time) is not followed and says so (store.ErrBehind),
// so the fleet member does not take it as applied, nor save it as its
// local copy; the same revision again is no news.
func TestFollowRefusesAnOlderRevision(t *testing.T) {
	f := newFx(t, nil)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil { // green, a standby, goes live: revision 2
		t.Fatal(err)
	}
	rec, err := f.st.Get(f.ctx)
	if err != nil || rec.Revision < 2 {
		t.Fatalf("revision %d, %v", rec.Revision, err)
	}
	if err := f.c.Follow(f.ctx, rec); err != nil {
		t.Fatalf("the same revision again: %v", err)
	}
	older := store.Record{Revision: rec.Revision - 1, Data: rec.Data}
	if err := f.c.Follow(f.ctx, older); !errors.Is(err, store.ErrBehind) {
		t.Fatalf("an older revision: %v, want store.ErrBehind", err)
	}
}
