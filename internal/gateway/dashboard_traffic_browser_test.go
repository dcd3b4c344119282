package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/admin/browsertest"
)

// TestDashboardTrafficChart: traffic the gateway carried before the page
// opened is in the chart as soon as it opens (from GET /api/v1/traffic,
// not from the page's own polling), with errors and TTFT beside requests.
func TestDashboardTrafficChart(t *testing.T) {
	browsertest.Require(t)
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Blue: plain answers and streams (TTFT), then streams that carry an
	// error event (errors). Green: nothing.
	for i := range 6 {
		if r, err := e.chat(ctx, testModels["blue"], "hello", i%2 == 0, ""); err != nil || r.status != http.StatusOK {
			t.Fatalf("request %d: %+v %v", i, r, err)
		}
	}
	for _, r := range e.pools["blue"] {
		r.mock.SetStreamErrorRate(1)
	}
	for range 2 {
		_, _ = e.chat(ctx, testModels["blue"], "hello", true, "") // its error is the point
	}

	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.WaitText("#live-pool", "blue", true)
	// ys lists the y of every point of pool's lines and dots in a panel;
	// above says whether one is above the panel's zero line (y = 92 in a
	// 112 px panel).
	ys := func(panel, pool string) string {
		sel := `[data-testid="chart-` + panel + `"] [data-pool="` + pool + `"]`
		return `[...document.querySelectorAll('` + sel + `')].flatMap((el) => el.tagName === 'circle'
			? [Number(el.getAttribute('cy'))] : el.getAttribute('points').split(' ').map((c) => Number(c.split(',')[1])))`
	}
	above := func(panel, pool string) string { return ys(panel, pool) + `.some((y) => y < 91)` }
	b.WaitJS("blue's requests in the chart", above("requests", "blue"))
	b.WaitJS("blue's errors in the chart", above("errors", "blue"))
	b.WaitJS("blue's TTFT in the chart", above("ttft", "blue"))
	b.WaitJS("green's flat requests line", ys("requests", "green")+`.length > 0 && !(`+above("requests", "green")+`)`)
	b.WaitJS("no TTFT line for green", ys("ttft", "green")+`.length === 0`)
	b.WaitText(`[data-testid="chart-ttft"] .chart-title`, "green no data", false)
	b.WaitText(`[data-testid="chart-ttft"] .chart-title`, " ms", false)
	b.WaitText("#traffic-sub", "last 5 minutes · 10 s points", true)
	b.Screenshot("dashboard-traffic.png")
	b.CheckConsole()
}

// TestDashboardPoolRoles: the dashboard names each pool with the role the
// status answer gives it, the same word as the CLI: the candidate while
// it is deployed, "retained" for the old pool after the promotion.
func TestDashboardPoolRoles(t *testing.T) {
	browsertest.Require(t)
	e, spare := rolloutEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.WaitText("#pool-green .badge", "standby", true)
	e.deployReady(t, spare)
	b.WaitText("#pool-green .badge", "new · ready", true)
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	b.WaitText("#pool-blue .badge", "retained", true)
	b.WaitText("#pool-green .badge", "live", true)
	b.CheckConsole()
}
