package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestRetireReportsFailingHook: `cutover retire` without --force waits for
// the attempt it started and exits 1 with the hook's output when the
// on_retire hook failed again (a regression: it exited 0 at once, whatever
// the hook did), and cutover_retire_failures returns to 0 once retirement
// completes.
func TestRetireReportsFailingHook(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "gpu-freed")
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: `rollout:
  retention: 1h
  drain_timeout: 5s
  warmup: {requests: []}
hooks:
  on_retire:
    - command: [sh, -c, 'test -e ` + flag + ` || { echo "stopping vllm on $CUTOVER_POOL: GPU 0 busy" >&2; exit 3; }']
`}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	ctx := context.Background()
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: mockPool(t, "model-v3", 1)}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	if _, err := client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	admin := []string{"--admin", "http://" + c.admin, "--timeout", "30s"}
	for attempt, want := range []string{"attempt 1", "attempt 2"} {
		code, stdout, stderr := runCLI(t, env, append([]string{"retire"}, admin...)...)
		out := stdout + stderr
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "GPU 0 busy") || !strings.Contains(out, "exit code 3") {
			t.Fatalf("retire #%d with a failing hook: exit %d, want 1 with %q and the hook's output:\n%s", attempt+1, code, want, out)
		}
	}
	if got := scrape(t, c.admin, "cutover_retire_failures"); got != "2" {
		t.Errorf("cutover_retire_failures = %q while the hook fails, want 2", got)
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, env, append([]string{"retire"}, admin...)...)
	if code != 0 || !strings.Contains(stdout, "completed") {
		t.Fatalf("retire once the hook passes: exit %d, want 0 and completed:\n%s%s", code, stdout, stderr)
	}
	if got := scrape(t, c.admin, "cutover_retire_failures"); got != "0" {
		t.Errorf("cutover_retire_failures = %q after the retirement completed, want 0", got)
	}
}

// scrape returns the value of an unlabelled metric on the admin listener.
func scrape(t *testing.T, admin, name string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestRetireWaitLosesGateway: when the gateway goes away while retire waits
// for the outcome, the error says the retirement was accepted and goes on
// (a regression: it read "admin API unreachable", as if nothing had
// started).
func TestRetireWaitLosesGateway(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/status":
			_, _ = io.WriteString(w, `{"live":"green","revision":3,"deployment":{"id":"d-2","phase":"promoted","from":"blue"}}`)
		case "/api/v1/retire":
			_, _ = io.WriteString(w, `{"id":"d-2","phase":"retiring","from":"blue"}`)
		default: // the gateway stops while the CLI follows the deployment
			srv.CloseClientConnections()
		}
	}))
	defer srv.Close()
	c := &api.Client{BaseURL: srv.URL, Token: "t"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := retireAndWait(ctx, c, api.RetireRequest{}, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "retirement of blue (deployment d-2) was accepted") || !strings.Contains(err.Error(), "cutover status") {
		t.Fatalf("err = %v", err)
	}
}
