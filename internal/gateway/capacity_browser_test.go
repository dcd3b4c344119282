package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cutover-dev/cutover/internal/admin/browsertest"
	"github.com/cutover-dev/cutover/internal/config"
)

// TestDashboardCapacityInBrowser: the dashboard's "GPUs and agents" card
// shows the GPUs each pool holds by state with their GPU-seconds and the
// overlap, and the agent up, then down with its error once it stops
// answering.
func TestDashboardCapacityInBrowser(t *testing.T) {
	browsertest.Require(t)
	// A stand-in agent: 4 free GPUs, no replicas.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/replicas":
			_, _ = w.Write([]byte(`{"replicas":[]}`))
		case "/v1/gpus":
			_, _ = w.Write([]byte(`{"gpus":[{"index":0,"replica":""},{"index":1,"replica":""},{"index":2,"replica":""},{"index":3,"replica":""}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	tok := filepath.Join(t.TempDir(), "agent-token")
	if err := os.WriteFile(tok, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{edit: func(c *config.Config) {
		c.Pools["blue"].GPUsPerReplica = 1
		c.Pools["green"].GPUsPerReplica = 1
		c.Agents = []config.Agent{{Name: "gpu-a", URL: fake.URL, TokenFile: tok}}
		c.Health.Interval = config.Duration(100 * time.Millisecond)
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := e.admin.Promote(ctx); err != nil { // a commit: the accounting has a step
		t.Fatal(err)
	}
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.Do("see the card", chromedp.WaitVisible(chromedp.ID("capacity")))
	b.WaitText("[data-testid=gpu-usage]", "green", false)
	b.WaitText("[data-testid=gpu-usage]", "live", false)
	b.WaitText("[data-testid=gpu-usage]", "GPU-s", false)
	b.WaitText("#capacity-sub", "overlap", false)
	b.WaitText("[data-testid=agents]", "gpu-a", false)
	b.WaitText("[data-testid=agents]", "4/4 GPUs free", false)
	b.WaitJS("the agent shown up", `document.querySelector("[data-testid=agents] li").dataset.up === "true"`)

	fake.Close() // the agent stops answering
	b.WaitJS("the agent shown down", `document.querySelector("[data-testid=agents] li").dataset.up === "false"`)
	b.WaitText("[data-testid=agents]", "down", false)
	b.CheckConsole()
}
