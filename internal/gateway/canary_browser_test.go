package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/internal/admin/browsertest"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestCanaryDashboardInBrowser: the dashboard shows a canary's weight bar
// with its step, and its abort button sets the weight to 0.
func TestCanaryDashboardInBrowser(t *testing.T) {
	browsertest.Require(t)
	e := canaryEnv(t, 25)
	deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2})
	e.waitPhase(t, "canary", 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.WaitText("#canary-weight", "Canary weight · step 1 of 1", false)
	b.WaitText("#canary-weight", "25% of new requests to green", false)
	b.WaitJS("the bar at 25 %", `document.querySelector("#canary-weight [role=progressbar]").getAttribute("aria-valuenow") === "25"`)
	b.WaitButton("btn-promote", "enabled", "")
	b.Do("abort", chromedp.Click(chromedp.ID("btn-abort")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.Do("confirm the abort", chromedp.Click(chromedp.ID("confirm-yes")))
	b.WaitText("#deployment-phase", "aborted", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Weights != nil || st.Deployment.Canary.Weight != 0 {
		t.Fatalf("after the abort: %+v %v", st, err)
	}
	b.CheckConsole()
}
