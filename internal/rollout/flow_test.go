package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/validation"
)

// The tests here drive the controller's phase changes with a fake clock,
// an in-memory store, and fake probes, hooks and validation: no servers
// (but for warm-up requests), no wall clock.

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeProber fails the replicas in fail with their error.
type fakeProber struct {
	mu   sync.Mutex
	fail map[string]error
}

func (p *fakeProber) Probe(_ context.Context, r *pool.Replica, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fail[r.Name]
}

func (p *fakeProber) set(replica string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail == nil {
		p.fail = map[string]error{}
	}
	p.fail[replica] = err
}

// fakeHooks succeeds unless the event is in fail, and records every run.
type fakeHooks struct {
	mu   sync.Mutex
	fail map[string]bool
	runs []string // event:pool
	// hold, when set for an event, makes its runs say so on the channel
	// and last until their context ends (as a command hook is killed).
	hold map[string]chan struct{}
}

func (h *fakeHooks) Run(ctx context.Context, _ hook.Spec, p hook.Payload) hook.Outcome {
	h.mu.Lock()
	held := h.hold[p.Event]
	h.mu.Unlock()
	if held != nil {
		held <- struct{}{}
		<-ctx.Done()
		return hook.Outcome{Event: p.Event, Hook: "fake", Output: "killed: " + ctx.Err().Error()}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, p.Event+":"+p.Pool)
	o := hook.Outcome{Event: p.Event, Hook: "fake", OK: !h.fail[p.Event]}
	if !o.OK {
		o.ExitCode, o.Output = 3, "no GPUs freed"
	}
	return o
}

func (h *fakeHooks) setFail(event string, fail bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail == nil {
		h.fail = map[string]bool{}
	}
	h.fail[event] = fail
}

func (h *fakeHooks) ran() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.runs)
}

// fakeValidator answers Evaluate with the gates it is given.
type fakeValidator struct {
	mu      sync.Mutex
	verdict string
	starts  []string // "pre:pool" or "post:pool"
	stops   int
}

func (v *fakeValidator) Start(_ context.Context, _ string, candidate *pool.Pool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.starts = append(v.starts, "pre:"+candidate.Name)
}

func (v *fakeValidator) StartPost(p string, _ validation.Stats) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.starts = append(v.starts, "post:"+p)
}

func (v *fakeValidator) Stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stops++
}

func (v *fakeValidator) Evaluate() ([]api.Gate, validation.Stats) {
	v.mu.Lock()
	defer v.mu.Unlock()
	g := api.Gate{Name: "error_rate", Value: 0.01, Threshold: 0.02, Op: "<=", Samples: 50, MinSamples: 20, Verdict: v.verdict}
	switch v.verdict {
	case validation.Inconclusive:
		g.Samples = 5 // short of its samples
	case verdictHanging:
		g.Verdict, g.Detail = validation.Inconclusive, "0 errors in 50 candidate answers, and 1 shadow copies unanswered for over 1.5s"
	}
	return []api.Gate{g}, validation.Stats{Samples: 50}
}

// verdictHanging makes the fake's gate inconclusive with its samples, as
// a copy left hanging makes error_rate.
const verdictHanging = "hanging"

func (v *fakeValidator) stopped() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stops
}

func (v *fakeValidator) set(verdict string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.verdict = verdict
}

type fx struct {
	t      *testing.T
	ctx    context.Context
	c      *Controller
	st     *memStore
	ap     *recorder
	clk    *fakeClock
	prober *fakeProber
	hooks  *fakeHooks
	val    *fakeValidator
	opts   Options
}

const newReplica = "http://127.0.0.1:3"

// newFx starts a controller, blue live, with a hook for every event;
// edit changes the options first.
func newFx(t *testing.T, edit func(*Options)) *fx {
	t.Helper()
	f := &fx{t: t, ctx: context.Background(), st: &memStore{}, ap: &recorder{}, clk: &fakeClock{t: t0},
		prober: &fakeProber{}, hooks: &fakeHooks{}, val: &fakeValidator{verdict: validation.Pass}}
	hooks := map[string][]hook.Spec{}
	for _, ev := range []string{"on_deploy", "before_promote", "on_promote", "on_rollback", "on_retire", "on_fail"} {
		hooks[ev] = []hook.Spec{{Command: []string{"true"}}}
	}
	f.opts = Options{Store: f.st, Applier: f.ap, Prober: f.prober, InitialLive: "blue", Now: f.clk.Now, HookRunner: f.hooks, Hooks: hooks,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Pools: map[string]PoolSpec{
			"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
			"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
		},
		Settings: Settings{Retention: time.Hour, DrainTimeout: time.Minute}}
	if edit != nil {
		edit(&f.opts)
	}
	f.restart()
	return f
}

// restart makes a new controller over the same store, as after a crash.
func (f *fx) restart() {
	f.t.Helper()
	c, err := New(f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := c.Start(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	f.c = c
}

// step reconciles once and waits for the warm-ups it started.
func (f *fx) step() {
	f.c.Reconcile(f.ctx)
	f.c.warm.wait()
}

// until reconciles until the latest deployment is in phase want.
func (f *fx) until(want Phase) api.Deployment {
	f.t.Helper()
	for range 10 {
		if d := f.latest(); d.Phase == string(want) {
			return d
		}
		f.step()
	}
	d := f.latest()
	f.t.Fatalf("deployment %s is %s (%s; waiting: %s), want %s", d.ID, d.Phase, d.Reason, d.Waiting, want)
	return d
}

func (f *fx) latest() api.Deployment {
	f.t.Helper()
	ds := f.c.Deployments()
	if len(ds) == 0 {
		f.t.Fatal("no deployment")
	}
	return ds[0]
}

func (f *fx) deploy(force bool) api.DeployResult {
	f.t.Helper()
	res, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{newReplica}, Force: force})
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

// refused asserts that err is a refusal with code.
func refused(t *testing.T, err error, code string, in ...string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || r.Code != code {
		t.Fatalf("got %v, want a refusal %s", err, code)
	}
	for _, s := range in {
		if !strings.Contains(r.Reason, s) {
			t.Fatalf("reason %q lacks %q", r.Reason, s)
		}
	}
}

// events returns the history's actions, each with its forced mark.
func (f *fx) events() []api.Event {
	f.t.Helper()
	h, err := f.c.History(f.ctx, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func (f *fx) lastEvent(action string) api.Event {
	f.t.Helper()
	evs := f.events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Action == action {
			return evs[i]
		}
	}
	f.t.Fatalf("no %s event in %+v", action, evs)
	return api.Event{}
}

// TestLifecycleToCompleted walks a deployment from deploy to completed:
// warming, ready, promoted, retained, retiring, completed; the hooks of
// each step run once, the status's protection and actions follow, and
// the retired pool is refused by name afterwards.
func TestLifecycleToCompleted(t *testing.T) {
	f := newFx(t, nil)
	res := f.deploy(false)
	if res.Deployment.Phase != "warming" || res.Deployment.Pool != "green" {
		t.Fatalf("deploy: %+v", res.Deployment)
	}
	if a := f.c.Status().Actions["promote"]; a.Allowed || a.Code != "deployment_not_ready" {
		t.Fatalf("promote while warming: %+v", a)
	}
	d := f.until(PhaseReady)
	if d.ReadyAt.IsZero() || d.DeadlineKind != "" {
		t.Fatalf("ready: %+v", d)
	}
	if a := f.c.Status().Actions["promote"]; !a.Allowed {
		t.Fatalf("promote when ready: %+v", a)
	}
	sw, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{ExpectedRevision: f.c.Status().Revision})
	if err != nil || sw.Live != "green" || sw.Forced {
		t.Fatalf("promote: %+v %v", sw, err)
	}
	s := f.c.Status()
	if p := s.Protection; p.RetainedPool != "blue" || p.RollbackTo != "blue" || !p.RetainedUntil.Equal(t0.Add(time.Hour)) || !strings.Contains(p.Summary, "retained for rollback until") {
		t.Fatalf("protection after promote: %+v", p)
	}
	if s.Deployment.DeadlineKind != "retention" {
		t.Fatalf("deadline kind %q", s.Deployment.DeadlineKind)
	}
	if a := s.Actions["retire"]; !a.Allowed || a.Force {
		t.Fatalf("retire while retained: %+v", a)
	}
	if a := s.Actions["deploy"]; a.Allowed || a.Code != "pool_retained" || !a.Force {
		t.Fatalf("deploy while retained: %+v", a)
	}
	f.step() // on_promote
	f.clk.Advance(time.Hour)
	d = f.until(PhaseRetiring)
	if d.DeadlineKind != "drain" {
		t.Fatalf("retiring: %+v", d)
	}
	d = f.until(PhaseCompleted)
	if d.RetiredAt.IsZero() {
		t.Fatalf("completed: %+v", d)
	}
	want := []string{"on_deploy:green", "before_promote:green", "on_promote:green", "on_retire:blue"}
	if got := f.hooks.ran(); !slices.Equal(got, want) {
		t.Fatalf("hooks ran %v, want %v", got, want)
	}
	if p := f.c.Pool("blue"); len(p.Replicas) != 0 {
		t.Fatalf("retired blue still has %d replicas", len(p.Replicas))
	}
	_, err = f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
	refused(t, err, "retired", "blue", "d-1")
	_, err = f.c.Promote(f.ctx, "op", api.PromoteRequest{Force: true})
	refused(t, err, "retired")
	if p := f.c.Status().Protection; p.RollbackTo != "" || !strings.HasPrefix(p.Summary, "nothing: ") {
		t.Fatalf("protection after retirement: %+v", p)
	}
}

// TestFailedCandidateNeedsForce: a deployment that fails leaves its
// version in the standby; promote refuses it, naming the deployment and
// its outcome, and a forced promote is recorded as forced, with the
// deployment, in the history.
func TestFailedCandidateNeedsForce(t *testing.T) {
	f := newFx(t, nil)
	f.prober.set(newReplica, errors.New("connection refused"))
	f.deploy(false)
	f.step()
	if d := f.latest(); !strings.Contains(d.Waiting, "connection refused") {
		t.Fatalf("waiting: %q", d.Waiting)
	}
	f.clk.Advance(31 * time.Minute) // past the default progress deadline
	d := f.until(PhaseFailed)
	if !strings.Contains(d.Reason, "progress deadline") || !strings.Contains(d.Reason, "never received client traffic") {
		t.Fatalf("failed: %s", d.Reason)
	}
	f.prober.set(newReplica, nil)
	f.c.Pool("green").Replicas[0].SetInitial(f.clk.Now(), nil) // healthy again, still the failed version
	rev := f.c.Status().Revision
	_, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
	refused(t, err, "standby_not_passed", "d-1", "failed")
	if s := f.c.Status(); s.Live != "blue" || s.Revision != rev {
		t.Fatalf("a refused promote changed the state: %s@%d", s.Live, s.Revision)
	}
	if a := f.c.Status().Actions["promote"]; a.Allowed || a.Code != "standby_not_passed" || !a.Force {
		t.Fatalf("status action promote: %+v", a)
	}
	sw, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{Force: true})
	if err != nil || !sw.Forced || sw.Live != "green" {
		t.Fatalf("forced promote: %+v %v", sw, err)
	}
	e := f.lastEvent("promote")
	if !e.Forced || e.Deployment != "d-1" || !strings.Contains(e.Reason, "forced") {
		t.Fatalf("promote event: %+v", e)
	}
	// The forced switch is undone like any other.
	if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil || sw.Live != "blue" {
		t.Fatalf("rollback after a forced promote: %+v %v", sw, err)
	}
}

// TestWrongModelFailsAtOnce: a new replica serving another model fails
// the deployment in warming without waiting for the deadline.
func TestWrongModelFailsAtOnce(t *testing.T) {
	f := newFx(t, nil)
	f.prober.set(newReplica, &pool.ModelMismatchError{Replica: newReplica, Want: "m3", Serves: []string{"m1"}})
	f.deploy(false)
	d := f.until(PhaseFailed)
	if !strings.Contains(d.Reason, "wrong model") {
		t.Fatalf("reason: %s", d.Reason)
	}
	f.step() // on_fail
	if got := f.hooks.ran(); !slices.Contains(got, "on_fail:green") {
		t.Fatalf("hooks %v lack on_fail", got)
	}
}

// TestAbortedReadyCandidateNeedsForce: abort while ready leaves a version
// that never passed before_promote; promote refuses it unless forced.
func TestAbortedReadyCandidateNeedsForce(t *testing.T) {
	f := newFx(t, nil)
	f.deploy(false)
	f.until(PhaseReady)
	_, err := f.c.Abort(f.ctx, "op", api.AbortRequest{ExpectedRevision: 1})
	refused(t, err, "revision_mismatch")
	dv, err := f.c.Abort(f.ctx, "op", api.AbortRequest{})
	if err != nil || dv.Phase != "aborted" {
		t.Fatalf("abort: %+v %v", dv, err)
	}
	_, err = f.c.Abort(f.ctx, "op", api.AbortRequest{})
	refused(t, err, "no_deployment")
	_, err = f.c.Promote(f.ctx, "op", api.PromoteRequest{})
	refused(t, err, "standby_not_passed", "d-1", "aborted")
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
}

// TestBeforePromoteHookBlocksPromotion: a failing before_promote hook
// refuses the promotion and records the hook; the deployment stays ready.
func TestBeforePromoteHookBlocksPromotion(t *testing.T) {
	f := newFx(t, nil)
	f.hooks.setFail("before_promote", true)
	f.deploy(false)
	f.until(PhaseReady)
	_, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
	refused(t, err, "before_promote_failed", "no GPUs freed")
	if d := f.latest(); d.Phase != "ready" || len(d.Hooks) == 0 || d.Hooks[len(d.Hooks)-1].OK {
		t.Fatalf("after a blocked promote: %+v", d)
	}
	if s := f.c.Status(); s.Live != "blue" {
		t.Fatalf("live %s", s.Live)
	}
}

// TestAbortDuringBeforePromoteHooks: an abort while a promote runs its
// before_promote hooks stops that promote (its hooks are ended) and aborts
// the deployment: the new pool never goes live. It used to wait for the
// promote, which switched, and then roll back: two switches, with client
// traffic on the new version in between.
func TestAbortDuringBeforePromoteHooks(t *testing.T) {
	f := newFx(t, nil)
	started := make(chan struct{}, 1)
	f.hooks.mu.Lock()
	f.hooks.hold = map[string]chan struct{}{"before_promote": started}
	f.hooks.mu.Unlock()
	f.deploy(false)
	f.until(PhaseReady)
	promoted := make(chan error, 1)
	go func() {
		_, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
		promoted <- err
	}()
	<-started
	dv, err := f.c.Abort(f.ctx, "op2", api.AbortRequest{})
	if err != nil || dv.Phase != "aborted" {
		t.Fatalf("abort during the hooks: %+v %v", dv, err)
	}
	refused(t, <-promoted, "promote_aborted", "op2")
	s := f.c.Status()
	if s.Live != "blue" {
		t.Fatalf("live %s after an abort during the promote's hooks", s.Live)
	}
	events, err := f.c.History(f.ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Action == "promote" || e.Action == "rollback" {
			t.Fatalf("a switch happened: %+v", e)
		}
	}
}

// TestRollbackUndoesTheLastSwitch: promote; rollback; rollback is
// refused (not a toggle), --to makes the pool live on purpose, and a
// revision guard refuses a switch when the state moved on.
func TestRollbackUndoesTheLastSwitch(t *testing.T) {
	f := newFx(t, nil)
	_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
	refused(t, err, "nothing_to_roll_back")
	seen := f.c.Status().Revision
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{ExpectedRevision: seen}); err != nil {
		t.Fatal(err)
	}
	// A second operator, who saw the same revision, is refused.
	_, err = f.c.Promote(f.ctx, "other", api.PromoteRequest{ExpectedRevision: seen})
	refused(t, err, "revision_mismatch", fmt.Sprintf("revision %d, not %d", seen+1, seen))
	if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil || sw.Live != "blue" {
		t.Fatalf("rollback: %+v %v", sw, err)
	}
	_, err = f.c.Rollback(f.ctx, "other", api.RollbackRequest{})
	refused(t, err, "already_rolled_back", "--to green")
	if s := f.c.Status(); s.Live != "blue" || s.Actions["rollback"].Code != "already_rolled_back" {
		t.Fatalf("status after a refused second rollback: %s %+v", s.Live, s.Actions["rollback"])
	}
	_, err = f.c.Rollback(f.ctx, "op", api.RollbackRequest{To: "blue"})
	refused(t, err, "no_target")
	if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{To: "green"}); err != nil || sw.Live != "green" {
		t.Fatalf("rollback --to green: %+v %v", sw, err)
	}
}

// TestPostPromotionAutoRollback: a gate failing after the promotion rolls
// back automatically; then the status no longer claims post-promotion
// checks or a retained pool, and a second rollback is refused.
func TestPostPromotionAutoRollback(t *testing.T) {
	f := newFx(t, func(o *Options) {
		o.Validator = nil // set below: New turns the window off without one
	})
	f.opts.Validator = f.val
	f.opts.Validation = ValidationSettings{Enabled: true, PostPromotionWindow: 10 * time.Minute, Interval: 5 * time.Second}
	f.restart()
	f.deploy(false)
	f.until(PhaseValidating)
	f.step() // the window starts
	f.clk.Advance(5 * time.Second)
	d := f.until(PhaseReady)
	if !strings.Contains(d.Reason, "validation passed") {
		t.Fatalf("ready: %s", d.Reason)
	}
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	s := f.c.Status()
	if p := s.Protection; !p.AutoRollbackUntil.Equal(f.clk.Now().Add(10*time.Minute)) || !strings.Contains(p.Summary, "roll back to blue automatically") {
		t.Fatalf("protection in the window: %+v", p)
	}
	if a := s.Actions["retire"]; a.Allowed || a.Code != "post_promotion_window" || !a.Force {
		t.Fatalf("retire in the window: %+v", a)
	}
	f.step() // starts the post-promotion window
	f.val.set(validation.Fail)
	f.clk.Advance(5 * time.Second)
	d = f.until(PhaseRolledBack)
	if !strings.Contains(d.Reason, "automatic rollback") {
		t.Fatalf("rolled back: %s", d.Reason)
	}
	s = f.c.Status()
	if s.Live != "blue" || s.Protection.AutoRollbackUntil != (time.Time{}) || s.Protection.RetainedPool != "" || strings.Contains(s.Protection.Summary, "post-promotion") {
		t.Fatalf("status after the automatic rollback: live %s, protection %+v", s.Live, s.Protection)
	}
	_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
	refused(t, err, "already_rolled_back")
	_, err = f.c.Rollback(f.ctx, "op", api.RollbackRequest{To: "green"})
	refused(t, err, "standby_not_passed", "d-1", "rolled back")
	_, err = f.c.Promote(f.ctx, "op", api.PromoteRequest{})
	refused(t, err, "standby_not_passed", "d-1", "rolled back")
	if got := f.hooks.ran(); !slices.Contains(got, "on_rollback:blue") {
		f.step()
		if got = f.hooks.ran(); !slices.Contains(got, "on_rollback:blue") {
			t.Fatalf("hooks %v lack on_rollback", got)
		}
	}
}

// TestRetireDuringPostPromotionNeedsForce: retire is refused while the
// post-promotion checks run; forced, it ends them (status says so) and the
// retention, and the history records it as forced.
func TestRetireDuringPostPromotionNeedsForce(t *testing.T) {
	f := newFx(t, nil)
	f.opts.Validator = f.val
	f.opts.Validation = ValidationSettings{PostPromotionWindow: 10 * time.Minute}
	f.restart()
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.step() // the window starts
	_, err := f.c.Retire(f.ctx, "op", api.RetireRequest{})
	refused(t, err, "post_promotion_window", "post-promotion checks of deployment d-1", "--force")
	if d := f.latest(); d.Phase != "promoted" || !d.RetainUntil.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a refused retire changed the deployment: %+v", d)
	}
	stops := f.val.stopped()
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	if n := f.val.stopped(); n != stops+1 {
		t.Fatalf("the validation window was not stopped (%d stops)", n)
	}
	e := f.lastEvent("retention_ended")
	if !e.Forced || !strings.Contains(e.Reason, "post-promotion checks") {
		t.Fatalf("event %+v", e)
	}
	s := f.c.Status()
	if !s.Protection.AutoRollbackUntil.IsZero() || strings.Contains(s.Protection.Summary, "post-promotion") {
		t.Fatalf("protection after a forced retire: %+v", s.Protection)
	}
	f.until(PhaseCompleted)
	if evs := f.events(); slices.ContainsFunc(evs, func(e api.Event) bool { return strings.HasPrefix(e.Action, "post_promotion") }) {
		t.Fatalf("a window ended by retire was judged afterwards: %+v", evs)
	}
}

// TestPostPromotionWindowEnds: the window ends with its verdict recorded.
func TestPostPromotionWindowEnds(t *testing.T) {
	for _, tc := range []struct{ verdict, action string }{
		{validation.Pass, "post_promotion_passed"},
		{validation.Inconclusive, "post_promotion_inconclusive"},
	} {
		t.Run(tc.verdict, func(t *testing.T) {
			f := newFx(t, nil)
			f.opts.Validator = f.val
			f.opts.Validation = ValidationSettings{PostPromotionWindow: time.Minute, Interval: 5 * time.Second}
			f.restart()
			f.deploy(false)
			f.until(PhaseReady)
			if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
				t.Fatal(err)
			}
			f.val.set(tc.verdict)
			f.step()
			f.clk.Advance(5 * time.Second)
			f.step()
			f.clk.Advance(time.Minute)
			f.step()
			f.lastEvent(tc.action)
			if a := f.c.Status().Actions["retire"]; !a.Allowed {
				t.Fatalf("retire after the window: %+v", a)
			}
		})
	}
}

// TestValidationFails: a gate failing its limit fails the deployment;
// without samples the deadline fails it (no data is not a pass).
func TestValidationFails(t *testing.T) {
	for _, tc := range []struct {
		verdict string
		advance time.Duration
		reason  string
	}{
		{validation.Fail, 5 * time.Second, "validation failed: gate error_rate"},
		{validation.Inconclusive, 11 * time.Minute, "not enough samples"},
		// With its samples but a copy hanging: the reason says so, not
		// "not enough samples".
		{verdictHanging, 11 * time.Minute, "undecided: error_rate: 0 errors in 50 candidate answers, and 1 shadow copies unanswered"},
	} {
		t.Run(tc.verdict, func(t *testing.T) {
			f := newFx(t, nil)
			f.opts.Validator = f.val
			f.opts.Validation = ValidationSettings{Enabled: true}
			f.restart()
			f.val.set(tc.verdict)
			f.deploy(false)
			d := f.until(PhaseValidating)
			if d.DeadlineKind != "validation" {
				t.Fatalf("deadline kind %q", d.DeadlineKind)
			}
			f.step()
			f.clk.Advance(tc.advance)
			d = f.until(PhaseFailed)
			if !strings.Contains(d.Reason, tc.reason) || len(d.Gates) == 0 {
				t.Fatalf("failed: %s, gates %v", d.Reason, d.Gates)
			}
			_, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
			refused(t, err, "standby_not_passed", "d-1", "failed")
		})
	}
}

// TestAutoPromote: a ready deployment promotes itself at its time; a
// refused auto-promotion backs off and says why.
func TestAutoPromote(t *testing.T) {
	f := newFx(t, func(o *Options) { o.Settings.AutoPromote, o.Settings.AutoPromoteAfter = true, time.Minute })
	f.hooks.setFail("before_promote", true)
	f.deploy(false)
	d := f.until(PhaseReady)
	if d.DeadlineKind != "auto_promote" {
		t.Fatalf("deadline kind %q", d.DeadlineKind)
	}
	f.clk.Advance(time.Minute)
	f.step()
	if d := f.latest(); d.Phase != "ready" || !strings.Contains(d.Waiting, "auto-promotion blocked") {
		t.Fatalf("blocked auto-promotion: %+v", d)
	}
	f.hooks.setFail("before_promote", false)
	f.step() // still backing off
	if d := f.latest(); d.Phase != "ready" {
		t.Fatalf("promoted before the backoff: %s", d.Phase)
	}
	f.clk.Advance(5 * time.Second)
	d = f.until(PhasePromoted)
	if !strings.Contains(d.Reason, "controller") {
		t.Fatalf("reason %s", d.Reason)
	}
}

// TestRetireHookFailures: a failing on_retire hook is retried with
// backoff; retire retries it now; retire --force completes.
func TestRetireHookFailures(t *testing.T) {
	f := newFx(t, nil)
	f.hooks.setFail("on_retire", true)
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseRetiring)
	f.step()
	d := f.latest()
	if d.RetireAttempts != 1 || !strings.Contains(d.RetireError, "on_retire") {
		t.Fatalf("after a failing on_retire: %+v", d)
	}
	if a := f.c.Status().Actions["rollback"]; a.Allowed || a.Code != "retention_over" {
		t.Fatalf("rollback while retiring: %+v", a)
	}
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{}); err != nil {
		t.Fatal(err)
	}
	f.step()
	if d := f.latest(); d.RetireAttempts != 2 {
		t.Fatalf("retire did not retry now: %+v", d)
	}
	if _, err := f.c.Retire(f.ctx, "op", api.RetireRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	if d := f.latest(); d.Phase != "completed" || !strings.Contains(d.Reason, "forced") {
		t.Fatalf("forced retire: %+v", d)
	}
	if e := f.lastEvent("phase"); !e.Forced {
		t.Fatalf("forced retirement not marked forced: %+v", e)
	}
	_, err := f.c.Retire(f.ctx, "op", api.RetireRequest{})
	refused(t, err, "nothing_to_retire")
}

// TestRetirementPostponedWhileLiveUnhealthy: the old pool is kept while
// the new live pool lacks healthy replicas.
func TestRetirementPostponedWhileLiveUnhealthy(t *testing.T) {
	f := newFx(t, nil)
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.c.Pool("green").Replicas[0].SetInitial(f.clk.Now(), errors.New("down"))
	f.clk.Advance(2 * time.Hour)
	f.step()
	d := f.latest()
	if d.Phase != "promoted" || !strings.Contains(d.Waiting, "postponed") {
		t.Fatalf("%+v", d)
	}
	if p := f.c.Status().Protection; p.RetainedPool != "blue" || !strings.Contains(p.Summary, "still retained") {
		t.Fatalf("protection: %+v", p)
	}
}

// TestForcedDeployOverRetainedPool: deploy --force ends the retention; the
// new deployment waits (pending) for the old pool to retire, then warms;
// a rollback meanwhile aborts the pending deployment instead.
func TestForcedDeployOverRetainedPool(t *testing.T) {
	t.Run("retire then warm", func(t *testing.T) {
		f := newFx(t, nil)
		f.deploy(false)
		f.until(PhaseReady)
		if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
			t.Fatal(err)
		}
		_, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4", Replicas: []string{"http://127.0.0.1:4"}})
		refused(t, err, "pool_retained", "--force")
		res, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4", Replicas: []string{"http://127.0.0.1:4"}, Force: true})
		if err != nil || res.Deployment.Phase != "pending" || !strings.Contains(res.Note, "no longer possible") {
			t.Fatalf("forced deploy: %+v %v", res, err)
		}
		if e := f.lastEvent("retention_ended"); !e.Forced || e.Deployment != "d-1" {
			t.Fatalf("retention_ended event: %+v", e)
		}
		if a := f.c.Status().Actions["deploy"]; a.Allowed || a.Code != "deployment_in_progress" {
			t.Fatalf("deploy while pending: %+v", a)
		}
		if a := f.c.Status().Actions["abort"]; !a.Allowed {
			t.Fatalf("abort while pending: %+v", a)
		}
		for range 10 {
			f.step()
		}
		ds := f.c.Deployments()
		if ds[1].Phase != "completed" || ds[0].Phase != "ready" || ds[0].Pool != "blue" {
			t.Fatalf("after the forced deploy: %s %s, %s %s", ds[1].ID, ds[1].Phase, ds[0].ID, ds[0].Phase)
		}
	})
	t.Run("rollback aborts the pending one", func(t *testing.T) {
		f := newFx(t, nil)
		f.deploy(false)
		f.until(PhaseReady)
		if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m4", Replicas: []string{"http://127.0.0.1:4"}, Force: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil {
			t.Fatal(err)
		}
		ds := f.c.Deployments()
		if ds[0].Phase != "aborted" || ds[1].Phase != "rolled_back" {
			t.Fatalf("%s %s, %s %s", ds[0].ID, ds[0].Phase, ds[1].ID, ds[1].Phase)
		}
	})
}

// TestAbortAfterPromotionIsARollback: abort of a promoted deployment
// rolls back, and counts as the last switch's undo.
func TestAbortAfterPromotionIsARollback(t *testing.T) {
	f := newFx(t, nil)
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	if a := f.c.Status().Actions["abort"]; !a.Allowed || !strings.Contains(a.Reason, "rollback") {
		t.Fatalf("abort action: %+v", a)
	}
	d, err := f.c.Abort(f.ctx, "op", api.AbortRequest{})
	if err != nil || d.Phase != "rolled_back" {
		t.Fatalf("abort: %+v %v", d, err)
	}
	if s := f.c.Status(); s.Live != "blue" {
		t.Fatalf("live %s", s.Live)
	}
	_, err = f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
	refused(t, err, "already_rolled_back")
}

// TestDeployRequestChecks: bad requests are 400 refusals naming the value.
func TestDeployRequestChecks(t *testing.T) {
	f := newFx(t, nil)
	for _, tc := range []struct {
		name string
		req  api.DeployRequest
		code string
	}{
		{"no model", api.DeployRequest{Replicas: []string{newReplica}}, "bad_model"},
		{"model with a control character", api.DeployRequest{Model: "m\x1b[2J", Replicas: []string{newReplica}}, "bad_model"},
		{"no replicas", api.DeployRequest{Model: "m"}, "no_replicas"},
		{"bad URL", api.DeployRequest{Model: "m", Replicas: []string{"127.0.0.1:5"}}, "bad_replica"},
		{"duplicate", api.DeployRequest{Model: "m", Replicas: []string{newReplica, newReplica + "/"}}, "bad_replica"},
		{"live replica", api.DeployRequest{Model: "m", Replicas: []string{"http://127.0.0.1:1"}}, "bad_replica"},
		// One server written two ways is still one replica.
		{"duplicate with the default port and another case", api.DeployRequest{Model: "m", Replicas: []string{"http://replica-a", "http://REPLICA-A:80/"}}, "bad_replica"},
		{"guard", api.DeployRequest{Model: "m", Replicas: []string{newReplica}, ExpectedRevision: 9}, "revision_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.Deploy(f.ctx, "op", tc.req)
			refused(t, err, tc.code)
		})
	}
	f.deploy(false)
	_, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m", Replicas: []string{"http://127.0.0.1:6"}})
	refused(t, err, "deployment_in_progress")
	if _, err := f.c.Deployment("d-9"); err == nil {
		t.Fatal("unknown deployment found")
	}
	if d, err := f.c.Deployment("d-1"); err != nil || d.Model != "m3" {
		t.Fatalf("%+v %v", d, err)
	}
}

// TestRestartResumes: a controller started on the store of one that
// stopped mid-deployment carries on from the stored phase and deadline.
func TestRestartResumes(t *testing.T) {
	f := newFx(t, nil)
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	f.restart()
	s := f.c.Status()
	if s.Live != "green" || s.Deployment.Phase != "promoted" || s.Protection.RetainedPool != "blue" {
		t.Fatalf("after restart: %s %s %+v", s.Live, s.Deployment.Phase, s.Protection)
	}
	f.clk.Advance(time.Hour)
	f.until(PhaseCompleted)
}

// TestWarmupRequests: warm-up requests go to each new replica before it
// counts as ready; a failing one keeps the deployment in warming with the
// answer in its note.
func TestWarmupRequests(t *testing.T) {
	var mu sync.Mutex
	fail := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		bad := fail
		mu.Unlock()
		if bad {
			http.Error(w, "model loading", http.StatusServiceUnavailable)
			return
		}
		if strings.Contains(readAll(r), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n")
			return
		}
		fmt.Fprint(w, `{"choices":[]}`)
	}))
	defer srv.Close()
	f := newFx(t, func(o *Options) {
		o.Settings.Warmup = []WarmupRequest{{Prompt: "hi"}, {Prompt: "hi", Stream: true}}
	})
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{srv.URL}}); err != nil {
		t.Fatal(err)
	}
	f.step()
	f.step()
	if d := f.latest(); d.Phase != "warming" || !strings.Contains(d.Waiting, "model loading") {
		t.Fatalf("warming with a failing warm-up: %+v", d)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	f.c.warm.mu.Lock()
	for _, s := range f.c.warm.states {
		s.retryAt = time.Time{} // the retry waits on the wall clock
	}
	f.c.warm.mu.Unlock()
	f.until(PhaseReady)
}

func readAll(r *http.Request) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}
