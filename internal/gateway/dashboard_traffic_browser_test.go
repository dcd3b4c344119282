package gateway_test

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardTrafficChart: traffic the gateway carried before the page
// opened is in the chart as soon as it opens (from GET /api/v1/traffic,
// not from the page's own polling), with errors and TTFT beside requests.
func TestDashboardTrafficChart(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
		}
		t.Fatalf("CI needs Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
	}
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

	b := startBrowser(ctx, t)
	b.do("open the dashboard and enter the token",
		chromedp.Navigate("http://"+e.gw.AdminAddr()+"/"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), testToken),
		chromedp.Click(chromedp.ID("token-submit")),
	)
	b.waitText("#live-pool", "blue", true)
	// ys lists the y of every point of pool's lines and dots in a panel;
	// above says whether one is above the panel's zero line (y = 92 in a
	// 112 px panel).
	ys := func(panel, pool string) string {
		sel := `[data-testid="chart-` + panel + `"] [data-pool="` + pool + `"]`
		return `[...document.querySelectorAll('` + sel + `')].flatMap((el) => el.tagName === 'circle'
			? [Number(el.getAttribute('cy'))] : el.getAttribute('points').split(' ').map((c) => Number(c.split(',')[1])))`
	}
	above := func(panel, pool string) string { return ys(panel, pool) + `.some((y) => y < 91)` }
	b.waitJS("blue's requests in the chart", above("requests", "blue"))
	b.waitJS("blue's errors in the chart", above("errors", "blue"))
	b.waitJS("blue's TTFT in the chart", above("ttft", "blue"))
	b.waitJS("green's flat requests line", ys("requests", "green")+`.length > 0 && !(`+above("requests", "green")+`)`)
	b.waitJS("no TTFT line for green", ys("ttft", "green")+`.length === 0`)
	b.waitText(`[data-testid="chart-ttft"] .chart-title`, "green no data", false)
	b.waitText(`[data-testid="chart-ttft"] .chart-title`, " ms", false)
	b.waitText("#traffic-sub", "last 5 minutes · 10 s points", true)
	b.screenshot("dashboard-traffic.png")
	b.checkConsole()
}

// TestDashboardPoolRoles: the dashboard names each pool with the role the
// status answer gives it, the same word as the CLI: the candidate while
// it is deployed, "retained" for the old pool after the promotion.
func TestDashboardPoolRoles(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
		}
		t.Fatalf("CI needs Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
	}
	e, spare := rolloutEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := startBrowser(ctx, t)
	b.do("open the dashboard and enter the token",
		chromedp.Navigate("http://"+e.gw.AdminAddr()+"/"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), testToken),
		chromedp.Click(chromedp.ID("token-submit")),
	)
	b.waitText("#pool-green .badge", "standby", true)
	e.deployReady(t, spare)
	b.waitText("#pool-green .badge", "new · ready", true)
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	b.waitText("#pool-blue .badge", "retained", true)
	b.waitText("#pool-green .badge", "live", true)
	b.checkConsole()
}
