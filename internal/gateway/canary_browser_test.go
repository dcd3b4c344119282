package gateway_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestCanaryDashboardInBrowser: the dashboard shows a canary's weight bar
// with its step, and its abort button sets the weight to 0.
func TestCanaryDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
		}
		t.Fatalf("CI needs Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
	}
	e := canaryEnv(t, 25)
	deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2})
	e.waitPhase(t, "canary", 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := startBrowser(ctx, t)
	b.do("open the dashboard and enter the token",
		chromedp.Navigate("http://"+e.gw.AdminAddr()+"/"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), testToken),
		chromedp.Click(chromedp.ID("token-submit")),
	)
	b.waitText("#canary-weight", "Canary weight · step 1 of 1", false)
	b.waitText("#canary-weight", "25% of new requests to green", false)
	b.waitJS("the bar at 25 %", `document.querySelector("#canary-weight [role=progressbar]").getAttribute("aria-valuenow") === "25"`)
	b.waitButton("btn-promote", "enabled", "")
	b.do("abort", chromedp.Click(chromedp.ID("btn-abort")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.do("confirm the abort", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitText("#deployment-phase", "aborted", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Weights != nil || st.Deployment.Canary.Weight != 0 {
		t.Fatalf("after the abort: %+v %v", st, err)
	}
	b.checkConsole()
}
