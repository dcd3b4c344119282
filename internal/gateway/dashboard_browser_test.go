package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin/browsertest"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestDashboardInBrowser drives the admin dashboard in a real Chromium
// against a full gateway: token, live pool, promote, actions the server
// would refuse disabled with the reason as tooltip, a stale confirmation
// refused by its revision guard with the reason shown, and a promote that
// needs force offered with force.
func TestDashboardInBrowser(t *testing.T) {
	browsertest.Require(t)
	e := newEnv(t, envOptions{})
	if _, err := e.chat(context.Background(), "", "hello", false, ""); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.WaitText("#live-pool", "blue", true)
	b.WaitText("#pool-blue", "2/2 healthy", false)
	b.WaitText("#pool-green", "model-v2", false)
	// No switch yet: the server would refuse rollback, so the page
	// disables it and says why.
	b.WaitButton("btn-rollback", "disabled", "no previous live pool")

	// Cancel does nothing (the revision below shows no second switch).
	b.Do("promote, then cancel", chromedp.Click(chromedp.ID("btn-promote")), chromedp.WaitVisible(chromedp.ID("confirm-no")),
		chromedp.Click(chromedp.ID("confirm-no")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	b.Do("promote", chromedp.Click(chromedp.ID("btn-promote")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.WaitText("#confirm-text", "green (model-v2) becomes live", false)
	b.Do("confirm the promotion", chromedp.Click(chromedp.ID("confirm-yes")))
	b.WaitText("#live-pool", "green", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "green" || st.Revision != 2 {
		t.Fatalf("after the click the gateway says %+v (%v), want green live at revision 2", st, err)
	}
	b.WaitText("#history", "blue → green", false)
	b.WaitText("#live-protection", "rollback makes blue (model model-v1) live again", false)
	b.WaitButton("btn-rollback", "enabled", "blue (model model-v1) is live again")
	b.WaitText("#btn-rollback", "Roll back to blue", true)

	// Another operator rolls back while this page asks for confirmation:
	// the page's click carries the revision it showed, so the gateway
	// refuses instead of switching a second time.
	b.Do("roll back", chromedp.Click(chromedp.ID("btn-rollback")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	b.Do("confirm the stale rollback", chromedp.Click(chromedp.ID("confirm-yes")))
	b.Do("see the refusal", chromedp.WaitVisible(chromedp.ID("error-banner")))
	b.WaitText("#error-banner", "HTTP 409", false)
	b.WaitText("#error-banner", "revision 3, not 2", false)
	b.WaitText("#live-pool", "blue", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "blue" || st.Revision != 3 {
		t.Fatalf("after a refused rollback the gateway says %+v (%v), want blue live at revision 3", st, err)
	}
	// Rollback undoes the last switch once: it is disabled now.
	b.WaitButton("btn-rollback", "disabled", "already a rollback")

	// A deployment aborted in green leaves a version that never passed:
	// promote needs force, which the page offers.
	spare := startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{spare.URL()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	e.gw.Checker().Tick(ctx)
	e.gw.Checker().Tick(ctx)
	b.WaitButton("btn-promote", "force", "green holds deployment d-1")
	// It looks refused-without-force even as the primary button: its
	// filled blue hid the dashed border that says so.
	b.WaitJS("the promote button drawn as needing force", `(() => { const s = getComputedStyle(document.getElementById("btn-promote"));
		return s.borderTopStyle === "dashed" && s.backgroundColor === "rgb(255, 255, 255)"; })()`)
	b.Do("promote with force", chromedp.Click(chromedp.ID("btn-promote")), chromedp.WaitVisible(chromedp.ID("confirm-force")))
	b.WaitText("#confirm-text", "Refused without force", false)
	b.WaitJS("confirm needs the force box", `document.getElementById("confirm-yes").disabled`)
	b.Do("tick force and confirm", chromedp.Click(chromedp.ID("confirm-force")), chromedp.Click(chromedp.ID("confirm-yes")))
	b.WaitText("#notice", "Promote (forced): green is live", false)
	b.WaitText("#live-pool", "green", true)
	if h, err := e.admin.History(ctx, 1); err != nil || len(h.Events) != 1 || !h.Events[0].Forced || h.Events[0].Deployment != "d-1" {
		t.Fatalf("history after the forced promote: %+v %v", h, err)
	}

	// Blue cannot serve any more: rollback to it is disabled with the reason.
	for _, r := range e.pools["blue"] {
		r.mock.SetFailHealth(true)
	}
	e.gw.Checker().Tick(ctx)
	e.gw.Checker().Tick(ctx)
	b.WaitText("#pool-blue", "0/2 healthy", false)
	b.WaitButton("btn-rollback", "disabled", "pool blue has no healthy replica")
	b.WaitText("#live-pool", "green", true)

	b.Screenshot("dashboard.png")

	// The token lives in the tab's session storage only, and goes away.
	b.WaitJS("the token only in sessionStorage", fmt.Sprintf(`sessionStorage.getItem("cutover.adminToken") === %q && localStorage.length === 0 && !location.href.includes(%q)`, testToken, testToken))
	b.Do("forget the token", chromedp.Click(chromedp.ID("btn-forget")), chromedp.WaitVisible(chromedp.ID("token-input")))
	b.WaitJS("no token kept", `sessionStorage.length === 0 && document.getElementById("app").hidden`)
	b.CheckConsole()
}
