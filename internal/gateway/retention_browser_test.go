package gateway_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/internal/admin/browsertest"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/store"
)

// seedShrunk writes, before the gateway starts, a state where deployment
// d-1 made green live and retention_mode shrink left blue with its first
// replica only (the second stopped through an agent), with restores in
// progress when given.
func seedShrunk(t *testing.T, cfg *config.Config, restores ...rollout.RestoreState) {
	t.Helper()
	now := time.Now().UTC()
	blue, green := cfg.Pools["blue"], cfg.Pools["green"]
	st := rollout.State{Live: "green", Previous: "blue", SwitchedAt: now, NextID: 1,
		Pools: map[string]rollout.PoolSpec{
			"green": {Model: green.Model, Replicas: green.Replicas, SetBy: "d-1"},
			"blue":  {Model: blue.Model, Replicas: blue.Replicas[:1]},
		},
		Deployments: []*rollout.Deployment{{
			ID: "d-1", Pool: "green", Model: green.Model, Replicas: green.Replicas,
			From: "blue", FromModel: blue.Model, FromReplicas: blue.Replicas,
			Phase: rollout.PhasePromoted, PhaseSince: now, Reason: "promoted by test",
			CreatedAt: now, CreatedBy: "test", PromotedAt: now, RetainUntil: now.Add(time.Hour), Deadline: now.Add(time.Hour),
			Shrunk:   []rollout.LaunchedReplica{{Agent: "gpu-a", ID: "r2", URL: blue.Replicas[1]}},
			ShrunkAt: now,
		}},
		Restores: restores,
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(context.Background(), 0, data); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardRollbackOutOfShrunkPool: with a retained pool that
// retention_mode shrink made smaller, the dashboard's rollback says it
// first brings the pool back to full size and offers to switch at once
// instead; without agents the restore fails with the gateway's reason
// (nothing switches), and the offered option switches at once.
func TestDashboardRollbackOutOfShrunkPool(t *testing.T) {
	browsertest.Require(t)
	e := newEnv(t, envOptions{edit: func(cfg *config.Config) {
		cfg.Rollout.RetentionMode = "shrink"
		seedShrunk(t, cfg)
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.WaitText("#live-pool", "green", true)
	b.WaitText("#live-protection", "shrunk to 1 of 2 replicas", false)
	b.WaitButton("btn-rollback", "enabled", "first brought back to its 2 replicas")

	b.Do("roll back", chromedp.Click(chromedp.ID("btn-rollback")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.WaitText("#confirm-text", "is first brought back to its 2 replicas (1 started through the agents", false)
	b.WaitText("#confirm-force-text", "switch at once onto the replicas blue has left, without starting the 1 missing first", false)
	b.Do("confirm without the option", chromedp.Click(chromedp.ID("confirm-yes")))
	b.Do("see the refusal", chromedp.WaitVisible(chromedp.ID("error-banner")))
	b.WaitText("#error-banner", "HTTP 502", false)
	b.WaitText("#error-banner", "no agents are configured to start the 1 missing replica(s)", false)
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "green" {
		t.Fatalf("after a failed restore the gateway says %+v (%v), want green still live", st, err)
	}

	b.Do("roll back at once", chromedp.Click(chromedp.ID("btn-rollback")), chromedp.WaitVisible(chromedp.ID("confirm-force")),
		chromedp.Click(chromedp.ID("confirm-force")), chromedp.Click(chromedp.ID("confirm-yes")))
	b.WaitText("#notice", "Rollback: blue is live (was green)", false)
	b.WaitText("#live-pool", "blue", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "blue" || len(st.Pools["blue"].Replicas) != 1 {
		t.Fatalf("after rollback with now the gateway says %+v (%v), want blue live on its 1 replica", st, err)
	}
	b.CheckConsole()
}
