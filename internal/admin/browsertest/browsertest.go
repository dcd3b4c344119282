// Package browsertest drives the admin dashboard in a headless Chromium for
// tests: one tab, steps that stop the test with a screenshot when they
// fail, and waits on the page's DOM instead of sleeps.
package browsertest

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

// ChromiumPath is Debian's Chromium; scripts/deps.sh installs it.
const ChromiumPath = "/usr/bin/chromium"

// Require skips t when there is no Chromium at ChromiumPath, or fails it
// when the CI environment variable is set (CI must run the browser tests).
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Chromium at %s (scripts/deps.sh installs it): %v", ChromiumPath, err)
		}
		t.Fatalf("CI needs Chromium at %s (scripts/deps.sh installs it): %v", ChromiumPath, err)
	}
}

// Browser is one headless Chromium tab for a test.
type Browser struct {
	t       testing.TB
	ctx     context.Context
	console *console
}

// console holds the exceptions and CSP violations the page reported.
type console struct {
	mu   sync.Mutex
	msgs []string // guarded by mu
}

// Start starts Chromium with one tab, stopped when ctx ends or t's
// cleanup runs. Call Require first.
func Start(ctx context.Context, t testing.TB) *Browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
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
	b := &Browser{t: t, ctx: bctx, console: &console{}}
	messages := chromedp.Console(bctx) // starts the browser
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.console.mu.Lock()
				b.console.msgs = append(b.console.msgs, m.String())
				b.console.mu.Unlock()
			}
		}
	}()
	return b
}

// For returns the same tab for t, a subtest of the test that started it:
// its steps fail t.
func (b *Browser) For(t testing.TB) *Browser {
	return &Browser{t: t, ctx: b.ctx, console: b.console}
}

// Login opens the dashboard at url (such as "http://127.0.0.1:8081/") and
// enters token in its login form.
func (b *Browser) Login(url, token string) {
	b.t.Helper()
	b.Do("open the dashboard and enter the token",
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), token),
		chromedp.Click(chromedp.ID("token-submit")),
	)
}

// Do runs steps; on failure it saves a screenshot and stops the test.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.Screenshot("failure.png")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// WaitText waits until the element sel's text is want (exact) or contains it.
func (b *Browser) WaitText(sel, want string, exact bool) {
	b.t.Helper()
	cond := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false; const s = el.textContent.trim(); return %t ? s === %q : s.includes(%q); })()`, sel, exact, want, want)
	if err := b.poll(cond); err != nil {
		b.Screenshot("failure.png")
		b.t.Fatalf("waiting for %s to show %q: %v; it shows %q", sel, want, err, b.Text(sel))
	}
}

// Text is the element sel's text with runs of white space made one space,
// or "(no element)".
func (b *Browser) Text(sel string) string {
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent ?? "(no element)"`, sel)))
	return strings.Join(strings.Fields(text), " ")
}

// WaitButton waits until the action button id is in state (enabled,
// disabled, or force: enabled but refused without force) with a tooltip
// containing reason.
func (b *Browser) WaitButton(id, state, reason string) {
	b.t.Helper()
	cond := map[string]string{
		"enabled":  `!el.disabled && !el.classList.contains("needs-force")`,
		"disabled": `el.disabled && el.classList.contains("is-refused")`,
		"force":    `!el.disabled && el.classList.contains("needs-force")`,
	}[state]
	b.WaitJS(fmt.Sprintf("%s %s, title with %q", id, state, reason),
		fmt.Sprintf(`(() => { const el = document.getElementById(%q); return !!el && %s && el.title.includes(%q); })()`, id, cond, reason))
}

// WaitJS waits until the JavaScript expression cond is true.
func (b *Browser) WaitJS(what, cond string) {
	b.t.Helper()
	if err := b.poll(cond); err != nil {
		b.Screenshot("failure.png")
		b.t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

// poll evaluates cond in the page on every DOM change until it is true.
func (b *Browser) poll(cond string) error {
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(20*time.Second)))
	return err
}

// Screenshot saves a full-page PNG in $CUTOVER_TEST_OUT, else in a
// temporary directory, and logs where.
func (b *Browser) Screenshot(name string) {
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

// CheckConsole fails the test for any exception or CSP violation the page
// reported.
func (b *Browser) CheckConsole() {
	b.t.Helper()
	b.console.mu.Lock()
	defer b.console.mu.Unlock()
	for _, m := range b.console.msgs {
		b.t.Errorf("page console: %s", m)
	}
}
