package admin

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin/browsertest"
)

// statusCtrl is stubCtrl answering every status call with st.
type statusCtrl struct {
	stubCtrl
	st api.Status
}

func (c statusCtrl) Status() api.Status { return c.st }

// hostileReason is a server string that would add an element if the
// dashboard parsed it as HTML.
const hostileReason = `<img src="x" onerror="window.injected = true">validating <b>m-2</b>`

// validatingStatus is a gateway validating deployment d-4 (m-2 in green),
// in a fleet of three when fleet is set, with the gates' samples from
// gates gateways and the shadow pairs from shadow gateways.
func validatingStatus(fleet bool, gates, shadow int) api.Status {
	now := time.Now().UTC()
	pool := func(name, model string, live bool, role string) api.Pool {
		return api.Pool{Name: name, Model: model, Live: live, Role: role, HealthyReplicas: 1,
			Replicas: []api.Replica{{URL: "http://127.0.0.1:9/" + name, Healthy: true, CheckedAt: now}}}
	}
	st := api.Status{
		Live:     "blue",
		Revision: 7,
		Pools:    map[string]api.Pool{"blue": pool("blue", "m-1", true, "live"), "green": pool("green", "m-2", false, "candidate")},
		Deployment: &api.Deployment{
			ID: "d-4", Pool: "green", Model: "m-2", Replicas: []string{"http://127.0.0.1:9/green"},
			From: "blue", FromModel: "m-1", Phase: "validating", PhaseSince: now.Add(-time.Minute),
			Deadline: now.Add(10 * time.Minute), DeadlineKind: "validation", Reason: hostileReason,
			CreatedAt: now.Add(-2 * time.Minute), CreatedBy: "ci",
			Gates: []api.Gate{
				{Name: "error_rate", Value: 0.01, Threshold: 0.05, Op: "<=", Samples: 40, MinSamples: 100, Verdict: "pending"},
				{Name: "shadow_match", Value: 0.98, Threshold: 0.9, Op: ">=", Samples: 30, MinSamples: 50, Verdict: "pending"},
			},
			GatesFromGateways:  gates,
			ShadowFromGateways: shadow,
		},
		Protection: api.Protection{Summary: "nothing: no previous live pool"},
	}
	if fleet {
		members := []api.FleetMember{{Name: "gw-a", Revision: 7}, {Name: "gw-b", Revision: 7}, {Name: "gw-c", Revision: 7}}
		st.Fleet = &api.Fleet{Leader: "gw-a", Self: "gw-b", Members: members,
			Store: api.StoreHealth{Kind: "etcd", Healthy: true, Since: now.Add(-time.Hour)}}
	}
	return st
}

// TestDashboardShowsFleetSampleSources: in a fleet, the deployment card
// says how many gateways the gate samples and the shadow pairs come from,
// as `cutover status` does; a single gateway shows no such line. Server
// strings stay text.
func TestDashboardShowsFleetSampleSources(t *testing.T) {
	browsertest.Require(t)
	tests := []struct {
		name          string
		fleet         bool
		gates, shadow int
		want          string // "": no line
	}{
		{"single gateway", false, 0, 0, ""},
		{"fleet before any sample", true, 0, 0, ""},
		{"fleet, shadow pairs only", true, 0, 3, "shadow pairs from 3 gateways"},
		{"fleet, no shadow pair yet", true, 2, 0, "gate samples from 2 gateways"},
		{"fleet, one gateway", true, 1, 1, "gate samples from 1 gateway, shadow pairs from 1"},
		{"fleet, gates and shadow", true, 3, 2, "gate samples from 3 gateways, shadow pairs from 2"}, // last: the screenshot
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tab := browsertest.Start(ctx, t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tab.For(t)
			loginTo(t, b, validatingStatus(tt.fleet, tt.gates, tt.shadow))
			b.WaitText("#deployment-phase", "validating", true)
			// The card is drawn in one go: with the phase shown, the
			// line is there or it is not.
			sel := `#deployment-body [data-testid="fleet-sources"]`
			if tt.want != "" {
				b.WaitText(sel, tt.want, true)
				b.WaitText("#deployment-body", "Fleet"+tt.want, false)
			} else if got := b.Text(sel); got != "(no element)" {
				t.Errorf("%s shows %q, want no such line", sel, got)
			}
			if tt.fleet {
				b.WaitText(`[data-testid="fleet-members"]`, "3 gateways", false)
			}
			b.WaitText("#deployment-body", hostileReason, false)
			b.WaitJS("the reason kept as text", `!document.querySelector("#deployment-body img, #deployment-body b") && !window.injected`)
		})
	}
	tab.Screenshot("dashboard-fleet-sources.png")
	tab.CheckConsole()
}

// TestDashboardShowsEngineLoad: with balancer: llm, each replica's row
// shows its engine's queue, running batch and the batch size the balancer
// learned ("≥" while the engine has not been seen queueing: the limit is
// not known yet), KV use and prefix hits; the pool shows the requests held
// in the gateway queue, with its counts in the tooltip.
func TestDashboardShowsEngineLoad(t *testing.T) {
	tab, b := newTab(t)
	st := validatingStatus(false, 0, 0)
	now := time.Now().UTC()
	blue := st.Pools["blue"]
	blue.Replicas = []api.Replica{
		{URL: "http://127.0.0.1:9/a", Healthy: true, CheckedAt: now, Engine: &api.EngineMetrics{Waiting: 1, Running: 4, Batch: 4, BatchKnown: true,
			KVCacheUsage: 0.42, PrefixCacheHitRate: 0.375, ScrapedAt: now}},
		{URL: "http://127.0.0.1:9/b", Healthy: true, CheckedAt: now, Engine: &api.EngineMetrics{Running: 2, Batch: 3, KVCacheUsage: 0.1, ScrapedAt: now}},
	}
	blue.HealthyReplicas = 2
	blue.GatewayQueue = &api.GatewayQueue{Waiting: 3, Held: 13, Dispatched: 8, TimedOut: 1, Canceled: 1, Overflowed: 2, WaitSeconds: 0.5}
	st.Pools["blue"] = blue
	loginTo(t, b, st)
	b.WaitText(`#pool-blue tr[data-replica="http://127.0.0.1:9/a"] [data-testid="engine"]`, "queue 1 · running 4 · batch 4 · KV 42% · prefix hits 38%", true)
	b.WaitText(`#pool-blue tr[data-replica="http://127.0.0.1:9/b"] [data-testid="engine"]`, "queue 0 · running 2 · batch ≥3 · KV 10% · prefix hits 0%", true)
	b.WaitText(`[data-testid="gateway-queue-blue"]`, "3", true)
	b.WaitJS("the gateway queue's counts in its tooltip", `document.querySelector('[data-testid="gateway-queue-blue"]').parentElement.title === "13 held (mean wait 50 ms): 8 dispatched, 1 timed out, 1 canceled; 2 overflowed"`)
	if got := b.Text(`[data-testid="gateway-queue-green"]`); got != "(no element)" {
		t.Errorf("green, never held, shows a gateway queue: %q", got)
	}
	tab.Screenshot("dashboard-engine-load.png")
	tab.CheckConsole()
}

// TestDashboardShowsBidiControlsEscaped: a bidirectional control in a
// server string (here the deployment's reason and its actor) is shown as
// its escape, as the CLI shows it, and cannot reorder the text on screen
// (a regression: U+202E from X-Cutover-Actor reversed what followed it).
func TestDashboardShowsBidiControlsEscaped(t *testing.T) {
	tab, b := newTab(t)
	st := validatingStatus(false, 0, 0)
	st.Deployment.Reason = "gates pass \u202eevil\u2066 end"
	loginTo(t, b, st)
	b.WaitText("#deployment-phase", "validating", true)
	b.WaitText("#deployment-body", `gates pass \u202eevil\u2066 end`, false)
	b.WaitJS("no bidirectional control on the page", `!/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(document.body.innerText)`)
	tab.CheckConsole()
}

// loginTo serves st from a stub controller until the test ends and logs
// b in to its dashboard.
func loginTo(t *testing.T, b *browsertest.Browser, st api.Status) {
	t.Helper()
	s, err := New(statusCtrl{st: st}, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	b.Login(srv.URL+"/", stubToken)
}

// newTab starts a browser for one test (skipped without Chromium), with
// 90 s for all of it.
func newTab(t *testing.T) (tab, b *browsertest.Browser) {
	t.Helper()
	browsertest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	tab = browsertest.Start(ctx, t)
	return tab, tab.For(t)
}
