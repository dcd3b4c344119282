package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// chromiumPath is Debian's Chromium; scripts/deps.sh installs it.
const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser drives the admin dashboard in a real Chromium
// against a full gateway: token, live pool, promote, actions the server
// would refuse disabled with the reason as tooltip, a stale confirmation
// refused by its revision guard with the reason shown, and a promote that
// needs force offered with force.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
		}
		t.Fatalf("CI needs Chromium at %s (scripts/deps.sh installs it): %v", chromiumPath, err)
	}
	e := newEnv(t, envOptions{})
	if _, err := e.chat(context.Background(), "", "hello", false, ""); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := startBrowser(ctx, t)
	url := "http://" + e.gw.AdminAddr() + "/"

	b.do("open the dashboard and enter the token",
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), testToken),
		chromedp.Click(chromedp.ID("token-submit")),
	)
	b.waitText("#live-pool", "blue", true)
	b.waitText("#pool-blue", "2/2 healthy", false)
	b.waitText("#pool-green", "model-v2", false)
	// No switch yet: the server would refuse rollback, so the page
	// disables it and says why.
	b.waitButton("btn-rollback", "disabled", "no previous live pool")

	// Cancel does nothing (the revision below shows no second switch).
	b.do("promote, then cancel", chromedp.Click(chromedp.ID("btn-promote")), chromedp.WaitVisible(chromedp.ID("confirm-no")),
		chromedp.Click(chromedp.ID("confirm-no")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	b.do("promote", chromedp.Click(chromedp.ID("btn-promote")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.waitText("#confirm-text", "green (model-v2) becomes live", false)
	b.do("confirm the promotion", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitText("#live-pool", "green", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "green" || st.Revision != 2 {
		t.Fatalf("after the click the gateway says %+v (%v), want green live at revision 2", st, err)
	}
	b.waitText("#history", "blue → green", false)
	b.waitText("#live-protection", "rollback makes blue (model model-v1) live again", false)
	b.waitButton("btn-rollback", "enabled", "blue (model model-v1) is live again")
	b.waitText("#btn-rollback", "Roll back to blue", true)

	// Another operator rolls back while this page asks for confirmation:
	// the page's click carries the revision it showed, so the gateway
	// refuses instead of switching a second time.
	b.do("roll back", chromedp.Click(chromedp.ID("btn-rollback")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	b.do("confirm the stale rollback", chromedp.Click(chromedp.ID("confirm-yes")))
	b.do("see the refusal", chromedp.WaitVisible(chromedp.ID("error-banner")))
	b.waitText("#error-banner", "HTTP 409", false)
	b.waitText("#error-banner", "revision 3, not 2", false)
	b.waitText("#live-pool", "blue", true)
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "blue" || st.Revision != 3 {
		t.Fatalf("after a refused rollback the gateway says %+v (%v), want blue live at revision 3", st, err)
	}
	// Rollback undoes the last switch once: it is disabled now.
	b.waitButton("btn-rollback", "disabled", "already a rollback")

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
	b.waitButton("btn-promote", "force", "green holds deployment d-1")
	b.do("promote with force", chromedp.Click(chromedp.ID("btn-promote")), chromedp.WaitVisible(chromedp.ID("confirm-force")))
	b.waitText("#confirm-text", "Refused without force", false)
	b.waitJS("confirm needs the force box", `document.getElementById("confirm-yes").disabled`)
	b.do("tick force and confirm", chromedp.Click(chromedp.ID("confirm-force")), chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitText("#notice", "Promote (forced): green is live", false)
	b.waitText("#live-pool", "green", true)
	if h, err := e.admin.History(ctx, 1); err != nil || len(h.Events) != 1 || !h.Events[0].Forced || h.Events[0].Deployment != "d-1" {
		t.Fatalf("history after the forced promote: %+v %v", h, err)
	}

	// Blue cannot serve any more: rollback to it is disabled with the reason.
	for _, r := range e.pools["blue"] {
		r.mock.SetFailHealth(true)
	}
	e.gw.Checker().Tick(ctx)
	e.gw.Checker().Tick(ctx)
	b.waitText("#pool-blue", "0/2 healthy", false)
	b.waitButton("btn-rollback", "disabled", "pool blue has no healthy replica")
	b.waitText("#live-pool", "green", true)

	b.screenshot("dashboard.png")

	// The token lives in the tab's session storage only, and goes away.
	b.waitJS("the token only in sessionStorage", fmt.Sprintf(`sessionStorage.getItem("cutover.adminToken") === %q && localStorage.length === 0 && !location.href.includes(%q)`, testToken, testToken))
	b.do("forget the token", chromedp.Click(chromedp.ID("btn-forget")), chromedp.WaitVisible(chromedp.ID("token-input")))
	b.waitJS("no token kept", `sessionStorage.length === 0 && document.getElementById("app").hidden`)
	b.checkConsole()
}

// browser is one headless Chromium tab for a test.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []string // exceptions and CSP violations the page reported
}

func startBrowser(ctx context.Context, t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: bctx}
	messages := chromedp.Console(bctx) // starts the browser
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.console = append(b.console, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs steps; on failure it saves a screenshot and stops the test.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.screenshot("failure.png")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitText waits until the element sel's text is want (exact) or contains it.
func (b *browser) waitText(sel, want string, exact bool) {
	b.t.Helper()
	cond := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false; const s = el.textContent.trim(); return %t ? s === %q : s.includes(%q); })()`, sel, exact, want, want)
	if err := b.poll(cond); err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent ?? "(no element)"`, sel)))
		b.screenshot("failure.png")
		b.t.Fatalf("waiting for %s to show %q: %v; it shows %q", sel, want, err, strings.Join(strings.Fields(text), " "))
	}
}

// waitButton waits until the action button id is in state (enabled,
// disabled, or force: enabled but refused without force) with a tooltip
// containing reason.
func (b *browser) waitButton(id, state, reason string) {
	b.t.Helper()
	cond := map[string]string{
		"enabled":  `!el.disabled && !el.classList.contains("needs-force")`,
		"disabled": `el.disabled && el.classList.contains("is-refused")`,
		"force":    `!el.disabled && el.classList.contains("needs-force")`,
	}[state]
	b.waitJS(fmt.Sprintf("%s %s, title with %q", id, state, reason),
		fmt.Sprintf(`(() => { const el = document.getElementById(%q); return !!el && %s && el.title.includes(%q); })()`, id, cond, reason))
}

// waitJS waits until the JavaScript expression cond is true.
func (b *browser) waitJS(what, cond string) {
	b.t.Helper()
	if err := b.poll(cond); err != nil {
		b.screenshot("failure.png")
		b.t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

// poll evaluates cond in the page on every DOM change until it is true.
func (b *browser) poll(cond string) error {
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(20*time.Second)))
	return err
}

// screenshot saves a full-page PNG in $CUTOVER_TEST_OUT, else in a
// temporary directory, and logs where.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("CUTOVER_TEST_OUT")
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Errorf("screenshot: %v", err)
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// checkConsole fails the test for any exception or CSP violation the page
// reported.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		b.t.Errorf("page console: %s", m)
	}
}
