package main

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestConfigCannotEmptyTheLivePool: the config's live names only the first
// start's pool, so its validation lets the standby by that name have no
// replicas. Once a promote made that pool live, a reload that empties it
// is refused naming the key (a regression: it was applied, and every
// request got 503 no_healthy_replica), and a start on such a file exits 2
// naming it instead of serving a live pool without a replica.
func TestConfigCannotEmptyTheLivePool(t *testing.T) {
	green := mockPool(t, "model-v2", 1)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: green}
	path := c.write(t)
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", path)
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	if _, err := client.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The same file with green's replicas gone (its live: blue unchanged).
	c.green = nil
	emptied, err := os.ReadFile(c.write(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, emptied, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, env, "reload", "--admin", "http://"+c.admin)
	if code != 1 || !strings.Contains(stderr, "pools.green.replicas") {
		t.Fatalf("reload emptying the live pool: exit %d, want 1 naming pools.green.replicas; stderr %s", code, stderr)
	}
	st, err := client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != "green" || len(st.Pools["green"].Replicas) != 1 || st.Pools["green"].Replicas[0].URL != green[0] {
		t.Fatalf("after the refused reload: live %s, green %+v; want green live with its replica", st.Live, st.Pools["green"].Replicas)
	}
	// A replica a deployment put in blue cannot join green by the file.
	candidate := mockPool(t, "model-v3", 1)
	if _, err := client.Deploy(t.Context(), api.DeployRequest{Model: "model-v3", Replicas: candidate}); err != nil {
		t.Fatal(err)
	}
	c.green = append(slices.Clone(green), candidate[0])
	shared, err := os.ReadFile(c.write(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, shared, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, env, "reload", "--admin", "http://"+c.admin)
	if code != 1 || !strings.Contains(stderr, "pools.green.replicas[1]") || !strings.Contains(stderr, "deployment d-1") {
		t.Fatalf("reload adding the candidate's replica to the live pool: exit %d, want 1 naming pools.green.replicas[1] and d-1; stderr %s", code, stderr)
	}
	if st, err := client.Status(t.Context()); err != nil || len(st.Pools["green"].Replicas) != 1 {
		t.Fatalf("after the refused reload: green %+v (%v), want its one replica", st.Pools["green"].Replicas, err)
	}
	if err := os.WriteFile(path, emptied, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Abort(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	code, _, stderr = runCLI(t, env, "serve", "--config", path)
	if code != 2 || !strings.Contains(stderr, "pools.green.replicas") {
		t.Fatalf("start with the live pool emptied: exit %d, want 2 naming pools.green.replicas; stderr %s", code, stderr)
	}
}
