package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/internal/admin/browsertest"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestCanaryDashboardInBrowser: the dashboard shows a canary's weight bar
// with its step, and its abort button sets the weight to 0.
func TestCanaryDashboardInBrowser(t *testing.T) {
	e, b, ctx := canaryInBrowser(t)
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

// TestCanaryRollbackInBrowser: during a canary the dashboard's rollback
// says it stops the canary (it said blue had been live since the first
// start and the gateway would refuse), and its notice says what was done
// (it said "blue is live (was )").
func TestCanaryRollbackInBrowser(t *testing.T) {
	e, b, ctx := canaryInBrowser(t)
	b.WaitText("#canary-weight", "25% of new requests to green", false)
	b.WaitButton("btn-rollback", "enabled", "")
	b.Do("roll back", chromedp.Click(chromedp.ID("btn-rollback")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.WaitText("#confirm-text", "The canary of deployment d-1", false)
	if s := b.Text("#confirm-text"); strings.Contains(s, "will refuse") {
		t.Fatalf("the rollback dialog during a canary: %q", s)
	}
	b.Do("confirm the rollback", chromedp.Click(chromedp.ID("confirm-yes")))
	b.WaitText("#notice", "stopped the canary of deployment d-1", false)
	b.WaitText("#deployment-phase", "aborted", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Weights != nil || st.Live != "blue" {
		t.Fatalf("after the rollback: %+v %v", st, err)
	}
	b.CheckConsole()
}

// canaryInBrowser is a gateway whose deployment is in its canary at 25 %,
// and a browser logged in to its dashboard (skipped without Chromium).
func canaryInBrowser(t *testing.T) (*env, *browsertest.Browser, context.Context) {
	t.Helper()
	browsertest.Require(t)
	e := canaryEnv(t, 25)
	deployV2(t, e, mockllm.Config{Tokens: 4, Seed: 2})
	e.waitPhase(t, "canary", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	return e, b, ctx
}
