package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestKill9DuringWarmingAndRetention: after kill -9 the deployment resumes
// in its phase with the same deadlines, and the retention still ends on
// time.
func TestKill9DuringWarmingAndRetention(t *testing.T) {
	m, err := mockllm.New(mockllm.Config{Model: "model-v3", Tokens: 2, FailHealth: true})
	if err != nil {
		t.Fatal(err)
	}
	slow := mockPoolWith(t, m) // becomes healthy only when the test says so
	evidence := filepath.Join(t.TempDir(), "retired")
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: `rollout:
  progress_deadline: 10m
  retention: 4s
  warmup:
    requests: [{prompt: hi, max_tokens: 2}]
hooks:
  on_retire:
    - command: [sh, -c, 'echo "$CUTOVER_POOL $CUTOVER_MODEL" > ` + evidence + `']
`}
	path := c.write(t)
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	ctx := context.Background()

	p := start(t, env, "serve", "--config", path)
	waitAdmin(t, p, client)
	res, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{slow}})
	if err != nil {
		t.Fatal(err)
	}
	warming := res.Deployment
	kill9(t, p)

	p = start(t, env, "serve", "--config", path)
	st := waitAdmin(t, p, client)
	if d := st.Deployment; d == nil || d.ID != warming.ID || d.Phase != "warming" || !d.Deadline.Equal(warming.Deadline) {
		t.Fatalf("after kill -9 in warming: %+v, want %s warming with deadline %s", d, warming.ID, warming.Deadline)
	}
	m.SetFailHealth(false)
	ready := waitDeployment(t, client, "ready", 30*time.Second)
	if _, err := client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted, err := client.Deployment(ctx, ready.ID)
	if err != nil || promoted.Phase != "promoted" {
		t.Fatalf("%+v %v", promoted, err)
	}
	kill9(t, p)

	p = start(t, env, "serve", "--config", path)
	st = waitAdmin(t, p, client)
	if d := st.Deployment; d.Phase != "promoted" || !d.RetainUntil.Equal(promoted.RetainUntil) || st.Live != "green" {
		t.Fatalf("after kill -9 in retention: live %s, %+v, want promoted until %s", st.Live, d, promoted.RetainUntil)
	}
	done := waitDeployment(t, client, "completed", 30*time.Second)
	if done.RetiredAt.Before(promoted.RetainUntil) {
		t.Errorf("retired at %s, before the retention end %s", done.RetiredAt, promoted.RetainUntil)
	}
	if late := done.RetiredAt.Sub(promoted.RetainUntil); late > 10*time.Second {
		t.Errorf("retired %s after the retention end", late)
	}
	if b, err := os.ReadFile(evidence); err != nil || strings.TrimSpace(string(b)) != "blue model-v1" {
		t.Errorf("on_retire evidence %q %v", b, err)
	}
}

func kill9(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.exitCode(t, 10*time.Second)
}

func waitDeployment(t *testing.T, c *api.Client, phase string, timeout time.Duration) *api.Deployment {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.Deployment != nil && st.Deployment.Phase == phase {
			return st.Deployment
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment never reached %s: %+v %v", phase, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeployCLI drives deploy, status, abort and retire from the command
// line, including refusals.
func TestDeployCLI(t *testing.T) {
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: "rollout:\n  retention: 1h\n  warmup: {requests: []}\n"}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	v3 := mockPool(t, "model-v3", 2)
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	admin := []string{"--admin", "http://" + c.admin}
	run := func(code int, want []string, args ...string) {
		t.Helper()
		got, stdout, stderr := runCLI(t, env, append(args, admin...)...)
		if got != code {
			t.Errorf("cutover %v: exit %d, want %d\n%s%s", args, got, code, stdout, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stdout+stderr, w) {
				t.Errorf("cutover %v: output lacks %q:\n%s%s", args, w, stdout, stderr)
			}
		}
	}
	run(2, []string{"--model"}, "deploy")
	run(1, []string{"replicas[0]", "ftp://x"}, "deploy", "--model", "m", "--replica", "ftp://x")
	run(0, []string{"deployment d-1", "model-v3 into green", "warming"}, "deploy", "--model", "model-v3", "--replica", v3[0], "--replica", v3[1])
	run(1, []string{"d-1", "in progress"}, "deploy", "--model", "model-v4", "--replica", "http://127.0.0.1:9")
	waitDeployment(t, client, "ready", 30*time.Second)
	run(0, []string{"deployment d-1", "READY", "model-v3 -> green"}, "status")
	run(0, []string{"green is live"}, "promote")
	run(0, []string{"PROMOTED", "retain to"}, "status")
	run(1, []string{"retained for rollback", "--force"}, "deploy", "--model", "model-v4", "--replica", "http://127.0.0.1:9")
	run(0, []string{"rolled_back"}, "abort")
	run(1, []string{"no deployment in progress"}, "abort")
	run(0, []string{"abort by", "rollback", "deploy", "d-1"}, "history")
	// green still holds the rolled-back d-1: promote needs --force.
	run(1, []string{"green holds deployment d-1", "rolled back", "force"}, "promote")
	run(0, []string{"promote (forced): green is live (was blue)"}, "promote", "--force")
	run(0, []string{"promote (forced)", "d-1"}, "history")
}
