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
)

// chromiumPath is Debian's Chromium; scripts/deps.sh installs it.
const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser drives the admin dashboard in a real Chromium
// against a full gateway: token, live pool, promote, and a refused
// rollback whose reason the page shows.
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
	// No switch yet: rollback names no target and says it will be refused.
	b.waitText("#btn-rollback", "Roll back", true)

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
	b.waitText("#btn-rollback", "Roll back to blue", true)

	// Blue cannot serve any more: a rollback to it must be refused.
	for _, r := range e.pools["blue"] {
		r.mock.SetFailHealth(true)
	}
	e.gw.Checker().Tick(ctx)
	e.gw.Checker().Tick(ctx)
	b.waitText("#pool-blue", "0/2 healthy", false)
	b.do("roll back", chromedp.Click(chromedp.ID("btn-rollback")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	b.do("confirm the rollback", chromedp.Click(chromedp.ID("confirm-yes")))
	b.do("see the refusal", chromedp.WaitVisible(chromedp.ID("error-banner")))
	b.waitText("#error-banner", "HTTP 409", false)
	b.waitText("#error-banner", "pool blue has no healthy replica", false)
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
