package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestReloadKeepsTheLivePoolHealthy: a reload whose health.path no
// replica of the live pool answers is refused naming the key, and the live
// pool keeps serving. Regression: it was applied, the next checks took
// every replica out and every request got 503 no_healthy_replica.
func TestReloadKeepsTheLivePoolHealthy(t *testing.T) {
	listen, admin := freeAddr(t), freeAddr(t)
	blue, green := mockPool(t, "model-v1", 1), mockPool(t, "model-v2", 1)
	stateDir := t.TempDir()
	path := filepath.Join(t.TempDir(), "cutover.yaml")
	write := func(healthPath string) {
		t.Helper()
		y := fmt.Sprintf(`listen: %s
admin:
  listen: %s
state_dir: %s
live: blue
health:
  path: %s
  interval: 200ms
  timeout: 1s
pools:
  blue:
    model: model-v1
    replicas: [%s]
  green:
    model: model-v2
    replicas: [%s]
`, listen, admin, stateDir, healthPath, blue[0], green[0])
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("/health")
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", path)
	client := &api.Client{BaseURL: "http://" + admin, Token: "secret"}
	waitAdmin(t, p, client)
	write("/healthz")
	code, _, stderr := runCLI(t, env, "reload", "--admin", "http://"+admin)
	if code != 1 || !strings.Contains(stderr, "health.path") || !strings.Contains(stderr, "status 404") {
		t.Fatalf("reload to a health path the replicas do not answer: exit %d, want 1 naming health.path; stderr %s", code, stderr)
	}
	last, err := client.LastReload(t.Context())
	if err != nil || last.Error == "" {
		t.Fatalf("last reload %+v (%v), want it refused", last, err)
	}
	st, err := client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pools["blue"].HealthyReplicas != 1 {
		t.Fatalf("blue after the refused reload: %+v, want its replica healthy", st.Pools["blue"])
	}
}
