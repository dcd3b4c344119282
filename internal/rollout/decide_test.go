package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// dep is a deployment of model m into pool p, from the other pool.
func dep(id, p string, phase Phase) *Deployment {
	from := "blue"
	if p == "blue" {
		from = "green"
	}
	return &Deployment{ID: id, Pool: p, Model: "m-" + id, Replicas: []string{"http://new-" + id}, From: from, FromModel: "old",
		Phase: phase, PhaseSince: t0, Reason: string(phase) + " for a reason", RetainUntil: t0.Add(time.Hour)}
}

// scene is a View at revision 7: live pool live, both pools with one
// healthy replica, deployments ds (a deployment that got its pool holds
// it unless it is pending).
func scene(live string, ds ...*Deployment) View {
	st := State{Live: live, Pools: map[string]PoolSpec{}}
	for _, d := range ds {
		st.Deployments = append(st.Deployments, d)
		if d.Phase != PhasePending {
			st.Pools[d.Pool] = PoolSpec{Model: d.Model, Replicas: d.Replicas, SetBy: d.ID}
		}
	}
	return View{State: st, Revision: 7, Now: t0, Pools: map[string]PoolView{
		"blue":  {Model: "mb", Replicas: 1, Healthy: 1},
		"green": {Model: "mg", Replicas: 1, Healthy: 1},
	}}
}

// with applies fn to v and returns it.
func with(v View, fn func(*View)) View {
	fn(&v)
	return v
}

func unhealthy(name string) func(*View) {
	return func(v *View) {
		p := v.Pools[name]
		p.Healthy, p.Unhealthy = 0, []string{"http://x: unhealthy (connection refused)"}
		v.Pools[name] = p
	}
}

// retired makes deployment d completed, its old pool retired (empty).
func retired(d *Deployment) *Deployment {
	d.Phase, d.RetiredAt = PhaseCompleted, t0.Add(-time.Minute)
	return d
}

type want struct {
	allowed bool
	code    string
	force   bool
	forced  bool
	target  string
	dep     string
	reason  []string // substrings of the reason
}

func check(t *testing.T, got Decision, w want) {
	t.Helper()
	if got.Allowed != w.allowed || got.Code != w.code || got.Force != w.force || got.Forced != w.forced {
		t.Fatalf("got allowed=%v code=%q force=%v forced=%v (%s); want allowed=%v code=%q force=%v forced=%v",
			got.Allowed, got.Code, got.Force, got.Forced, got.Reason, w.allowed, w.code, w.force, w.forced)
	}
	if w.target != "" && got.Target != w.target {
		t.Fatalf("target %q, want %q", got.Target, w.target)
	}
	if got.Deployment != w.dep {
		t.Fatalf("deployment %q, want %q", got.Deployment, w.dep)
	}
	for _, s := range w.reason {
		if !strings.Contains(got.Reason, s) {
			t.Fatalf("reason %q lacks %q", got.Reason, s)
		}
	}
	if got.Reason == "" {
		t.Fatal("empty reason")
	}
}

// withRetired is blue live again after d-1 (green) completed, blue
// retired, then... no: green live, blue retired by d-1.
func retiredBlue() View {
	d := retired(dep("d-1", "green", PhasePromoted))
	v := scene("green", d)
	v.State.Pools["blue"] = PoolSpec{SetBy: "d-1"}
	v.State.Previous = "blue"
	v.Pools["blue"] = PoolView{}
	return v
}

func TestDecidePromote(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    View
		req  api.PromoteRequest
		want want
	}{
		{"plain switch", scene("blue"), api.PromoteRequest{}, want{allowed: true, target: "green", reason: []string{"green (model mg) becomes live"}}},
		{"guard matches", scene("blue"), api.PromoteRequest{ExpectedRevision: 7}, want{allowed: true, target: "green"}},
		{"guard moved on", scene("blue"), api.PromoteRequest{ExpectedRevision: 6, Force: true}, want{code: "revision_mismatch", reason: []string{"revision 7, not 6"}}},
		{"standby failed", scene("blue", dep("d-1", "green", PhaseFailed)), api.PromoteRequest{},
			want{code: "standby_not_passed", force: true, reason: []string{"green holds deployment d-1", "failed (failed for a reason)", "force"}}},
		{"standby failed, forced", scene("blue", dep("d-1", "green", PhaseFailed)), api.PromoteRequest{Force: true},
			want{allowed: true, forced: true, target: "green", dep: "d-1", reason: []string{"forced", "d-1"}}},
		{"standby aborted while ready", scene("blue", dep("d-2", "green", PhaseAborted)), api.PromoteRequest{},
			want{code: "standby_not_passed", force: true, reason: []string{"d-2", "aborted", "before_promote"}}},
		{"standby rolled back", with(scene("green", dep("d-3", "blue", PhaseRolledBack)), func(v *View) { v.State.Previous = "blue" }), api.PromoteRequest{},
			want{code: "standby_not_passed", force: true, reason: []string{"blue holds deployment d-3", "rolled back"}}},
		{"standby completed deployment's old pool holds nothing", retiredBlue(), api.PromoteRequest{Force: true},
			want{code: "retired", reason: []string{"retired", "d-1"}}},
		{"standby unhealthy", with(scene("blue"), unhealthy("green")), api.PromoteRequest{Force: true},
			want{code: "pool_cannot_serve", reason: []string{"no healthy replica", "connection refused"}}},
		{"standby empty", with(scene("blue"), func(v *View) { v.Pools["green"] = PoolView{} }), api.PromoteRequest{},
			want{code: "pool_cannot_serve", reason: []string{"no replicas"}}},
		{"ready deployment", scene("blue", dep("d-4", "green", PhaseReady)), api.PromoteRequest{},
			want{allowed: true, target: "green", dep: "d-4", reason: []string{"before_promote"}}},
		{"ready but unhealthy", with(scene("blue", dep("d-4", "green", PhaseReady)), unhealthy("green")), api.PromoteRequest{},
			want{code: "pool_cannot_serve"}},
		{"warming", scene("blue", dep("d-5", "green", PhaseWarming)), api.PromoteRequest{Force: true},
			want{code: "deployment_not_ready", reason: []string{"d-5 is warming"}}},
		{"validating", scene("blue", dep("d-5", "green", PhaseValidating)), api.PromoteRequest{},
			want{code: "deployment_not_ready"}},
		{"promoted", scene("green", dep("d-6", "green", PhasePromoted)), api.PromoteRequest{},
			want{code: "deployment_not_ready", reason: []string{"already promoted", "rollback returns to blue"}}},
		{"retiring", scene("green", dep("d-6", "green", PhaseRetiring)), api.PromoteRequest{},
			want{code: "deployment_not_ready", reason: []string{"being retired"}}},
		{"pending", scene("blue", dep("d-7", "green", PhasePending)), api.PromoteRequest{},
			want{code: "deployment_not_ready", reason: []string{"pending"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, decidePromote(tc.v, tc.req), tc.want) })
	}
}

func TestDecideRollback(t *testing.T) {
	prev := func(v View, rolledBack bool) View {
		v.State.Previous, v.State.RolledBack, v.State.SwitchedAt = standby(v.State), rolledBack, t0
		return v
	}
	// The case: d-1 (green) retired blue; d-2 then went into
	// blue, was promoted and rolled back: blue holds d-2, not nothing.
	d1, d2 := retired(dep("d-1", "green", PhasePromoted)), dep("d-2", "blue", PhaseRolledBack)
	afterRollback := prev(scene("green", d1, d2), true)
	for _, tc := range []struct {
		name string
		v    View
		req  api.RollbackRequest
		want want
	}{
		{"first start", scene("blue"), api.RollbackRequest{}, want{code: "nothing_to_roll_back", reason: []string{"since the first start"}}},
		{"undo a promote", prev(scene("green"), false), api.RollbackRequest{}, want{allowed: true, target: "blue"}},
		{"guard", prev(scene("green"), false), api.RollbackRequest{ExpectedRevision: 3}, want{code: "revision_mismatch"}},
		{"second rollback", prev(scene("blue"), true), api.RollbackRequest{}, want{code: "already_rolled_back", reason: []string{"already a rollback", "--to green"}}},
		{"second rollback with --to", prev(scene("blue"), true), api.RollbackRequest{To: "green"}, want{allowed: true, target: "green"}},
		{"--to the live pool", prev(scene("blue"), false), api.RollbackRequest{To: "blue"}, want{code: "no_target", reason: []string{"already live"}}},
		{"--to an unknown pool", prev(scene("blue"), false), api.RollbackRequest{To: "red"}, want{code: "bad_target", reason: []string{`"red"`, "blue, green"}}},
		{"previous unhealthy", with(prev(scene("green"), false), unhealthy("blue")), api.RollbackRequest{}, want{code: "pool_cannot_serve"}},
		{"previous retired", retiredBlue(), api.RollbackRequest{}, want{code: "retired", reason: []string{"blue", "retired", "d-1"}}},
		{"previous holds a later deployment, rolled back", afterRollback, api.RollbackRequest{},
			want{code: "already_rolled_back", reason: []string{"blue holds deployment d-2", "promote --force"}}},
		{"previous retired, then filled by a failed deployment", func() View {
			v := prev(scene("green", retired(dep("d-1", "green", PhasePromoted)), dep("d-2", "blue", PhaseFailed)), false)
			return v
		}(), api.RollbackRequest{}, want{code: "standby_not_passed", reason: []string{"blue holds deployment d-2", "failed"}}},
		{"--to a pool holding a rolled-back deployment", afterRollback, api.RollbackRequest{To: "blue"},
			want{code: "standby_not_passed", reason: []string{"blue holds deployment d-2", "promote --force"}}},
		{"inside retention", scene("green", dep("d-3", "green", PhasePromoted)), api.RollbackRequest{},
			want{allowed: true, target: "blue", dep: "d-3", reason: []string{"blue (model old) is live again", "d-3 ends rolled back"}}},
		{"inside retention --to the retained pool", scene("green", dep("d-3", "green", PhasePromoted)), api.RollbackRequest{To: "blue"},
			want{allowed: true, target: "blue", dep: "d-3"}},
		{"retained pool unhealthy", with(scene("green", dep("d-3", "green", PhasePromoted)), unhealthy("blue")), api.RollbackRequest{},
			want{code: "pool_cannot_serve", reason: []string{"retained pool blue"}}},
		{"retiring", scene("green", dep("d-3", "green", PhaseRetiring)), api.RollbackRequest{}, want{code: "retention_over", reason: []string{"being retired"}}},
		{"not promoted", scene("blue", dep("d-4", "green", PhaseReady)), api.RollbackRequest{}, want{code: "not_promoted", reason: []string{"abort"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, decideRollback(tc.v, tc.req), tc.want) })
	}
	// The reasons never say blue was retired while it holds d-2 (a
	// regression: the newest completed deployment that retired blue was
	// named, not what blue holds now).
	for _, req := range []api.RollbackRequest{{}, {To: "blue"}} {
		if r := decideRollback(afterRollback, req).Reason; strings.Contains(r, "retired") {
			t.Fatalf("reason describes a pool that is no longer there: %s", r)
		}
	}
	if r := protection(afterRollback).Summary; strings.Contains(r, "retired") {
		t.Fatalf("protection describes a pool that is no longer there: %s", r)
	}
}

func TestDecideAbort(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    View
		req  api.AbortRequest
		want want
	}{
		{"nothing", scene("blue"), api.AbortRequest{}, want{code: "no_deployment"}},
		{"finished", scene("blue", dep("d-1", "green", PhaseFailed)), api.AbortRequest{}, want{code: "no_deployment"}},
		{"warming", scene("blue", dep("d-1", "green", PhaseWarming)), api.AbortRequest{}, want{allowed: true, dep: "d-1", reason: []string{"never received client traffic"}}},
		{"ready, guarded", scene("blue", dep("d-1", "green", PhaseReady)), api.AbortRequest{ExpectedRevision: 7}, want{allowed: true, dep: "d-1"}},
		{"guard moved on", scene("blue", dep("d-1", "green", PhaseReady)), api.AbortRequest{ExpectedRevision: 8}, want{code: "revision_mismatch"}},
		{"pending", scene("green", dep("d-1", "green", PhasePromoted), dep("d-2", "blue", PhasePending)), api.AbortRequest{}, want{allowed: true, dep: "d-2"}},
		{"promoted: a rollback", scene("green", dep("d-1", "green", PhasePromoted)), api.AbortRequest{}, want{allowed: true, dep: "d-1", target: "blue", reason: []string{"aborting it is a rollback"}}},
		{"promoted, retained unhealthy", with(scene("green", dep("d-1", "green", PhasePromoted)), unhealthy("blue")), api.AbortRequest{}, want{code: "pool_cannot_serve"}},
		{"retiring", scene("green", dep("d-1", "green", PhaseRetiring)), api.AbortRequest{}, want{code: "too_late"}},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, decideAbort(tc.v, tc.req), tc.want) })
	}
}

func TestDecideRetire(t *testing.T) {
	window := func(d *Deployment, until time.Duration) *Deployment {
		d.PostPromotionUntil = t0.Add(until)
		return d
	}
	for _, tc := range []struct {
		name string
		v    View
		req  api.RetireRequest
		want want
	}{
		{"nothing", scene("blue"), api.RetireRequest{}, want{code: "nothing_to_retire"}},
		{"ready", scene("blue", dep("d-1", "green", PhaseReady)), api.RetireRequest{Force: true}, want{code: "nothing_to_retire"}},
		{"promoted", scene("green", dep("d-1", "green", PhasePromoted)), api.RetireRequest{}, want{allowed: true, dep: "d-1", reason: []string{"retention of blue"}}},
		{"promoted, window over", scene("green", window(dep("d-1", "green", PhasePromoted), -time.Second)), api.RetireRequest{}, want{allowed: true, dep: "d-1"}},
		{"post-promotion window", scene("green", window(dep("d-1", "green", PhasePromoted), time.Minute)), api.RetireRequest{},
			want{code: "post_promotion_window", force: true, reason: []string{"post-promotion checks of deployment d-1", "2026-12-06T12:01:00Z", "rolls back to blue automatically", "--force"}}},
		{"post-promotion window, forced", scene("green", window(dep("d-1", "green", PhasePromoted), time.Minute)), api.RetireRequest{Force: true},
			want{allowed: true, forced: true, dep: "d-1", reason: []string{"ends the post-promotion checks"}}},
		{"guard", scene("green", dep("d-1", "green", PhasePromoted)), api.RetireRequest{ExpectedRevision: 1}, want{code: "revision_mismatch"}},
		{"retiring: retry", scene("green", dep("d-1", "green", PhaseRetiring)), api.RetireRequest{}, want{allowed: true, dep: "d-1", reason: []string{"run again"}}},
		{"retiring: force", scene("green", dep("d-1", "green", PhaseRetiring)), api.RetireRequest{Force: true}, want{allowed: true, dep: "d-1", reason: []string{"without its failing"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, decideRetire(tc.v, tc.req), tc.want) })
	}
}

func TestDecideDeploy(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    View
		req  api.DeployRequest
		want want
	}{
		{"idle", scene("blue"), api.DeployRequest{}, want{allowed: true, target: "green"}},
		{"after a failure", scene("blue", dep("d-1", "green", PhaseFailed)), api.DeployRequest{}, want{allowed: true, target: "green"}},
		{"guard", scene("blue"), api.DeployRequest{ExpectedRevision: 2}, want{code: "revision_mismatch"}},
		{"in progress", scene("blue", dep("d-1", "green", PhaseValidating)), api.DeployRequest{Force: true}, want{code: "deployment_in_progress", reason: []string{"d-1", "validating"}}},
		{"pending", scene("green", dep("d-1", "green", PhasePromoted), dep("d-2", "blue", PhasePending)), api.DeployRequest{Force: true}, want{code: "deployment_in_progress", reason: []string{"d-2 is pending"}}},
		{"retained", scene("green", dep("d-1", "green", PhasePromoted)), api.DeployRequest{}, want{code: "pool_retained", force: true, reason: []string{"pool blue is retained", "d-1"}}},
		{"retained, in the window", scene("green", func() *Deployment {
			d := dep("d-1", "green", PhasePromoted)
			d.PostPromotionUntil = t0.Add(time.Minute)
			return d
		}()), api.DeployRequest{}, want{code: "pool_retained", force: true, reason: []string{"post-promotion checks"}}},
		{"retained, forced", scene("green", dep("d-1", "green", PhasePromoted)), api.DeployRequest{Force: true}, want{allowed: true, forced: true, dep: "d-1", target: "blue"}},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, decideDeploy(tc.v, tc.req), tc.want) })
	}
}

func TestProtection(t *testing.T) {
	promoted := dep("d-1", "green", PhasePromoted)
	promoted.PostPromotionUntil = t0.Add(10 * time.Minute)
	late := dep("d-1", "green", PhasePromoted)
	late.RetainUntil = t0.Add(-time.Minute)
	for _, tc := range []struct {
		name              string
		v                 View
		rollbackTo        string
		retained          string
		autoUntil         time.Time
		summary           []string
		summaryNotContain string
	}{
		{"first start", scene("blue"), "", "", time.Time{}, []string{"nothing", "since the first start"}, ""},
		{"after a plain promote", with(scene("green"), func(v *View) { v.State.Previous = "blue" }), "blue", "", time.Time{}, []string{"rollback makes blue (model mb) live again"}, ""},
		{"after a rollback", with(scene("blue"), func(v *View) { v.State.Previous, v.State.RolledBack = "green", true }), "", "", time.Time{}, []string{"nothing", "already a rollback"}, ""},
		{"retention and window", scene("green", promoted), "blue", "blue", promoted.PostPromotionUntil, []string{"blue is retained for rollback until 2026-12-06T13:00:00Z", "post-promotion checks run until 2026-12-06T12:10:00Z"}, ""},
		// Regression: it said blue was retained for rollback while a
		// rollback was refused for want of a healthy replica.
		{"retention, retained pool unhealthy", with(scene("green", dep("d-1", "green", PhasePromoted)), unhealthy("blue")), "", "blue", time.Time{},
			[]string{"blue is retained for rollback until", "but blue has no healthy replica now (http://x: unhealthy (connection refused)): a rollback is refused"}, ""},
		{"retention over, retirement postponed", scene("green", late), "blue", "blue", time.Time{}, []string{"still retained", "ended at"}, "post-promotion"},
		{"retiring", scene("green", dep("d-1", "green", PhaseRetiring)), "", "", time.Time{}, []string{"nothing", "being retired"}, ""},
		{"retired", retiredBlue(), "", "", time.Time{}, []string{"nothing", "retired"}, "post-promotion"},
		{"after an automatic rollback", with(scene("blue", func() *Deployment {
			d := dep("d-1", "green", PhaseRolledBack)
			d.PostPromotionUntil = t0.Add(10 * time.Minute)
			return d
		}()), func(v *View) { v.State.Previous, v.State.RolledBack = "green", true }), "", "", time.Time{}, []string{"nothing"}, "post-promotion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := protection(tc.v)
			if p.RollbackTo != tc.rollbackTo || p.RetainedPool != tc.retained || !p.AutoRollbackUntil.Equal(tc.autoUntil) {
				t.Fatalf("got %+v", p)
			}
			for _, s := range tc.summary {
				if !strings.Contains(p.Summary, s) {
					t.Fatalf("summary %q lacks %q", p.Summary, s)
				}
			}
			if tc.summaryNotContain != "" && strings.Contains(p.Summary, tc.summaryNotContain) {
				t.Fatalf("summary %q mentions %q", p.Summary, tc.summaryNotContain)
			}
		})
	}
}

// TestActionsMatchDecisions: the status's actions are the deciders'
// answers without force, with force offered where it would help.
func TestActionsMatchDecisions(t *testing.T) {
	v := scene("blue", dep("d-1", "green", PhaseFailed))
	a := actions(v)
	if len(a) != 5 {
		t.Fatalf("actions %v", a)
	}
	if p := a["promote"]; p.Allowed || p.Code != "standby_not_passed" || !p.Force || !strings.Contains(p.Reason, "d-1") {
		t.Fatalf("promote %+v", p)
	}
	if r := a["rollback"]; r.Allowed || r.Code != "nothing_to_roll_back" || r.Force {
		t.Fatalf("rollback %+v", r)
	}
	if d := a["deploy"]; !d.Allowed || d.Code != "" {
		t.Fatalf("deploy %+v", d)
	}
	if d := a["abort"]; d.Allowed || d.Code != "no_deployment" {
		t.Fatalf("abort %+v", d)
	}
	if d := a["retire"]; d.Allowed || d.Code != "nothing_to_retire" {
		t.Fatalf("retire %+v", d)
	}
}
