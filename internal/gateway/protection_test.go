package gateway_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/validation"
)

// postPromotionEnv is a validationEnv that promotes automatically and
// keeps the new live pool under post-promotion checks for an hour (as
// long as the retention), with the error-rate gate alone.
func postPromotionEnv(t *testing.T) *env {
	t.Helper()
	return validationEnv(t, func(c *config.Config) {
		c.Rollout.AutoPromote = true
		c.Validation.PostPromotion = config.Duration(time.Hour)
		onlyGate(c, validation.GateErrorRate)
		c.Validation.Gates.ErrorRate.MinSamples = 50
	})
}

// promotedWithChecks deploys a good model-v2b under load, waits until it
// is promoted, and checks that the status, through the admin API, says the
// post-promotion checks protect it.
func promotedWithChecks(t *testing.T, e *env) (*api.Deployment, []*replica, *load) {
	t.Helper()
	l := startLoad(e, 4)
	t.Cleanup(l.end)
	rs := deployV2(t, e, mockllm.Config{Tokens: 6, TTFT: 20 * time.Millisecond, ITL: 2 * time.Millisecond, AnswerAs: "model-v1"})
	d := e.waitPhase(t, "promoted", 60*time.Second)
	s, err := e.admin.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Protection; p.AutoRollbackUntil.IsZero() || p.Deployment != d.ID || p.RetainedPool != "blue" ||
		!strings.Contains(p.Summary, "post-promotion checks run until") || !strings.Contains(p.Summary, "roll back to blue automatically") {
		t.Fatalf("protection while the checks run: %+v", p)
	}
	return d, rs, l
}

// TestRetireDuringPostPromotionWindow: through the admin API, retire is
// refused (409 post_promotion_window, naming what it would end) while the
// post-promotion checks run and changes nothing; --force ends them, their
// automatic rollback and the retention, the history records it as forced,
// and status no longer claims the checks protect the live pool.
func TestRetireDuringPostPromotionWindow(t *testing.T) {
	e := postPromotionEnv(t)
	ctx := context.Background()
	d, _, _ := promotedWithChecks(t, e)
	s, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Actions["retire"]; a.Allowed || a.Code != "post_promotion_window" || !a.Force {
		t.Fatalf("status offers retire in the window: %+v", a)
	}
	_, err = e.admin.Retire(ctx, false)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "post_promotion_window" ||
		!strings.Contains(ae.Message, "post-promotion checks of deployment "+d.ID) || !strings.Contains(ae.Message, "--force") {
		t.Fatalf("retire in the window: %v, want 409 post_promotion_window naming %s and --force", err, d.ID)
	}
	after, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Deployment == nil || after.Deployment.Phase != "promoted" || after.Protection.AutoRollbackUntil.IsZero() || after.Live != "green" {
		t.Fatalf("a refused retire changed the state: live %s, deployment %+v, protection %+v", after.Live, after.Deployment, after.Protection)
	}

	if _, err := e.admin.Retire(ctx, true); err != nil {
		t.Fatalf("forced retire: %v", err)
	}
	s, err = e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The old pool may still be retained until its retirement starts,
	// but its retention has ended and nothing rolls back automatically.
	if p := s.Protection; !p.AutoRollbackUntil.IsZero() || p.RetainedUntil.After(e.clock.now()) || p.Summary == "" ||
		strings.Contains(p.Summary, "post-promotion") || strings.Contains(p.Summary, "automatically") {
		t.Fatalf("protection after the forced retire: %+v", p)
	}
	h, err := e.admin.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(h.Events, func(ev api.Event) bool {
		return ev.Action == "retention_ended" && ev.Forced && strings.Contains(ev.Reason, "post-promotion checks")
	}); i < 0 {
		t.Fatalf("no forced retention_ended naming the post-promotion checks in the history: %+v", h.Events)
	}
	e.waitPhase(t, "completed", 60*time.Second)
	s, err = e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Live != "green" || !s.Protection.AutoRollbackUntil.IsZero() || !strings.HasPrefix(s.Protection.Summary, "nothing: ") {
		t.Fatalf("after retirement: live %s, protection %+v", s.Live, s.Protection)
	}
}

// TestProtectionAfterAutomaticRollback: once a post-promotion gate fails
// and rolls back, status (through the admin API) no longer shows the
// checks, the retention or the rolled-back deployment as protecting the
// live pool.
func TestProtectionAfterAutomaticRollback(t *testing.T) {
	e := postPromotionEnv(t)
	ctx := context.Background()
	_, rs, _ := promotedWithChecks(t, e)
	for _, r := range rs {
		r.mock.SetErrorRate(1)
	}
	d := e.waitPhase(t, "rolled_back", 60*time.Second)
	if !strings.Contains(d.Reason, "automatic rollback") {
		t.Fatalf("reason %q", d.Reason)
	}
	s, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Protection; s.Live != "blue" || !p.AutoRollbackUntil.IsZero() || p.RetainedPool != "" || p.Deployment != "" ||
		p.Summary == "" || strings.Contains(p.Summary, "post-promotion") || strings.Contains(p.Summary, "retained") {
		t.Fatalf("after the automatic rollback: live %s, protection %+v", s.Live, p)
	}
}
