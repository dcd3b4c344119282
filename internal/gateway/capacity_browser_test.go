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
	"github.com/cutover-dev/cutover/internal/rollout"
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

// TestDashboardShowsRestoreInProgress: a shrunk pool's restore in
// progress (here carried on after a restart, its agent not answering the
// start yet) is on the "GPUs and agents" card with its pool, deployment
// and each replica's state.
func TestDashboardShowsRestoreInProgress(t *testing.T) {
	browsertest.Require(t)
	release := make(chan struct{})
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/replicas":
			select { // the replica is still being started
			case <-release:
			case <-r.Context().Done():
			}
			http.Error(w, "stopped", http.StatusServiceUnavailable)
		case r.URL.Path == "/v1/replicas":
			_, _ = w.Write([]byte(`{"replicas":[]}`))
		case r.URL.Path == "/v1/gpus":
			_, _ = w.Write([]byte(`{"gpus":[{"index":0,"replica":""}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	defer close(release) // before fake.Close, which waits for the handlers
	tok := filepath.Join(t.TempDir(), "agent-token")
	if err := os.WriteFile(tok, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{edit: func(c *config.Config) {
		c.Rollout.RetentionMode = "shrink"
		c.Agents = []config.Agent{{Name: "gpu-a", URL: fake.URL, TokenFile: tok}}
		c.Launch.ReadyTimeout = config.Duration(10 * time.Minute)
		seedShrunk(t, c, rollout.RestoreState{Key: "restore-d-1-1", Deployment: "d-1", Pool: "blue", Model: c.Pools["blue"].Model, N: 1,
			Since: time.Now().UTC(), Slots: []rollout.LaunchSlot{{Agent: "gpu-a", Key: "restore-d-1-1.0", State: rollout.SlotAsked}}})
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if st, err := e.admin.Status(ctx); err != nil || len(st.Restores) != 1 || st.Restores[0].Pool != "blue" {
		t.Fatalf("status restores %+v (%v), want blue's", st.Restores, err)
	}
	b := browsertest.Start(ctx, t)
	b.Login("http://"+e.gw.AdminAddr()+"/", testToken)
	b.Do("see the card", chromedp.WaitVisible(chromedp.ID("capacity")))
	b.WaitText("#capacity", "Restoring blue to full size: 1 replica of model-v1 (d-1, for the rollback)", false)
	b.WaitText("[data-testid=restore]", "gpu-a asked", false)
	b.CheckConsole()
}
