package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/agent"
)

// startAgentProc runs `cutover agent` with gpus GPUs whose replicas are
// this binary's mock-llm, and returns a client for it. Its replicas are
// stopped before it is killed.
func startAgentProc(t *testing.T, gpus int) (c *agent.Client, addr, tok string) {
	t.Helper()
	return startAgentProcGated(t, gpus, "")
}

// startAgentProcGated is startAgentProc whose replicas, when gate is set,
// start serving only once that file exists.
func startAgentProcGated(t *testing.T, gpus int, gate string) (c *agent.Client, addr, tok string) {
	t.Helper()
	a := startAgent(t, gpus, gate)
	return a.c, a.addr, a.tok
}

// agentProc is a `cutover agent` process started by startAgent.
type agentProc struct {
	c         *agent.Client
	addr, tok string
	cfg       string // its config file
	p         *proc
}

// startAgent is startAgentProcGated, returning the process too.
func startAgent(t *testing.T, gpus int, gate string) *agentProc {
	t.Helper()
	var c *agent.Client
	var addr, tok string
	dir := t.TempDir()
	tok = filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = freeAddr(t)
	_, portStr, _ := net.SplitHostPort(freeAddr(t))
	var port int
	fmt.Sscan(portStr, &port)
	if port > 65000 {
		port = 40000
	}
	command := fmt.Sprintf(`[%s, mock-llm, --model, "{model}", --listen, "127.0.0.1:{port}", --enable-sleep-mode, --tokens, "4"]`, binary)
	if gate != "" {
		command = fmt.Sprintf(`[sh, -c, 'i=0; while [ ! -e %s ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; exec %s mock-llm --model "$0" --listen "127.0.0.1:$1" --tokens 4', "{model}", "{port}"]`, gate, binary)
	}
	y := fmt.Sprintf(`listen: %s
token_file: %s
gpus: %d
ports: %d-%d
command: %s
env: {VLLM_SERVER_DEV_MODE: "1"}
log_dir: %s
stop_grace: 5s
`, addr, tok, gpus, port, port+40, command, filepath.Join(dir, "logs"))
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, "agent", "--config", cfg)
	c, err := agent.NewClient("gpu-a", "http://"+addr, "agent-secret", nil)
	a := &agentProc{c: c, addr: addr, tok: tok, cfg: cfg, p: p}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs before start's kill: leave no replica behind
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rs, _ := c.Replicas(ctx)
		for _, r := range rs {
			if r.State != agent.StateExited {
				_, _ = c.Stop(ctx, r.ID)
			}
		}
		// A test that killed the agent and left it down could not ask
		// it: end what its state file still lists (each replica leads
		// its own process group).
		killRecordedReplicas(t, filepath.Join(dir, "logs", "agent-state.json"))
	})
	a.await(t)
	return a
}

// killRecordedReplicas sends SIGKILL to the process group of every
// replica an agent's state file lists that is still alive, so that no
// test leaves a replica behind however it ended.
func killRecordedReplicas(t *testing.T, stateFile string) {
	t.Helper()
	b, err := os.ReadFile(stateFile)
	if err != nil {
		return // nothing was started
	}
	var sf struct {
		Replicas []struct {
			PID   int         `json:"pid"`
			State agent.State `json:"state"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Errorf("agent state file %s: %v", stateFile, err)
		return
	}
	for _, r := range sf.Replicas {
		if r.PID > 0 && r.State != agent.StateExited {
			_ = syscall.Kill(-r.PID, syscall.SIGKILL)
		}
	}
}

// serveWithAgent starts a real agent with gpus GPUs and a gateway whose
// deployments launch 2 replicas through it (warm-up off; rollout holds
// the lines of rollout: before that, indented), blue serving model-v1 and
// green model-v2 from one simulated replica each; it returns the agent's
// client, the admin API's (once the gateway answers) and its config.
func serveWithAgent(t *testing.T, gpus int, rollout string) (*agent.Client, *api.Client, serveConfig) {
	t.Helper()
	ac, agentAddr, tok := startAgentProc(t, gpus)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf(`rollout:
%s  warmup: {requests: []}
agents:
  - {name: gpu-a, url: "http://%s", token_file: %s}
launch: {replicas: 2, ready_timeout: 1m}
`, rollout, agentAddr, tok)}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	return ac, client, c
}

// await waits until the agent answers.
func (a *agentProc) await(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := a.c.Replicas(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never answered: %v\n%s", err, a.p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 kills the agent process (SIGKILL: its replicas, in their own
// process groups, keep running) and waits for it to be gone.
func (a *agentProc) kill9(t *testing.T) {
	t.Helper()
	_ = a.p.cmd.Process.Kill()
	a.p.exitCode(t, 10*time.Second)
}

// restart starts the agent again with the same config (it re-adopts its
// replicas) and waits until it answers.
func (a *agentProc) restart(t *testing.T) {
	t.Helper()
	a.p = start(t, nil, "agent", "--config", a.cfg)
	a.await(t)
}

// TestDeployLaunchesReplicasThroughAgent: `cutover deploy --model ID`
// without --replica has the gateway start launch.replicas replicas through
// a real `cutover agent` (spread on its free GPUs); they serve, are
// promoted, and the retirement of their pool (after the on_retire hook)
// stops them through the agent: listed exited, their GPUs free.
func TestDeployLaunchesReplicasThroughAgent(t *testing.T) {
	ac, agentAddr, tok := startAgentProc(t, 4)
	hookRan := filepath.Join(t.TempDir(), "hook-ran")
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf(`rollout:
  retention: 1h
  drain_timeout: 5s
  warmup: {requests: []}
agents:
  - {name: gpu-a, url: "%s", token_file: %s}
launch: {replicas: 2, gpus_per_replica: 1, ready_timeout: 1m}
hooks:
  on_retire:
    - command: [sh, -c, 'echo "$CUTOVER_POOL" >> %s']
`, "http://"+agentAddr, tok, hookRan)}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	admin := []string{"--admin", "http://" + c.admin}
	ctx := context.Background()

	// deploy launches 2 replicas of model-v3 on GPUs 0 and 1 into green.
	code, stdout, stderr := runCLI(t, env, append([]string{"deploy", "--model", "model-v3"}, admin...)...)
	if code != 0 || !strings.Contains(stdout, "(2 replicas)") {
		t.Fatalf("deploy without --replica: exit %d\n%s%s", code, stdout, stderr)
	}
	rs, err := ac.Replicas(ctx)
	if err != nil || len(rs) != 2 {
		t.Fatalf("agent replicas after deploy = %+v, %v; want 2", rs, err)
	}
	var v3 []string
	var gpus []int
	for _, r := range rs {
		if r.Model != "model-v3" || r.State != agent.StateRunning {
			t.Fatalf("launched replica %+v, want model-v3 running", r)
		}
		v3 = append(v3, ac.ReplicaURL(r))
		gpus = append(gpus, r.GPUs...)
	}
	slices.Sort(gpus)
	if !slices.Equal(gpus, []int{0, 1}) {
		t.Fatalf("launched on GPUs %v, want [0 1]", gpus)
	}
	d := waitDeployment(t, client, "ready", 30*time.Second)
	if got := slices.Sorted(slices.Values(d.Replicas)); !slices.Equal(got, slices.Sorted(slices.Values(v3))) {
		t.Fatalf("deployment replicas %v, want the launched %v", d.Replicas, v3)
	}
	if _, err := client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if pool := poolOf(t, c.listen); pool != "green" {
		t.Fatalf("after promote traffic goes to %s, want green", pool)
	}
	// Retiring blue (replicas not started by an agent) stops nothing.
	if code, out, errOut := runCLI(t, env, append([]string{"retire", "--timeout", "30s"}, admin...)...); code != 0 {
		t.Fatalf("retire blue: exit %d\n%s%s", code, out, errOut)
	}

	// A second deployment launches model-v4 into blue on the two free GPUs.
	if code, out, errOut := runCLI(t, env, append([]string{"deploy", "--model", "model-v4"}, admin...)...); code != 0 {
		t.Fatalf("second deploy: exit %d\n%s%s", code, out, errOut)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	if _, err := client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if pool := poolOf(t, c.listen); pool != "blue" {
		t.Fatalf("after the second promote traffic goes to %s, want blue", pool)
	}
	// Retiring green runs the hook, then stops model-v3's replicas.
	code, stdout, stderr = runCLI(t, env, append([]string{"retire", "--timeout", "30s"}, admin...)...)
	if code != 0 || !strings.Contains(stdout, "completed") {
		t.Fatalf("retire green: exit %d\n%s%s", code, stdout, stderr)
	}
	hooks, _ := os.ReadFile(hookRan)
	if string(hooks) != "blue\ngreen\n" {
		t.Fatalf("on_retire ran for %q, want blue then green", hooks)
	}
	rs, err = ac.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		want := agent.StateRunning
		if r.Model == "model-v3" {
			want = agent.StateExited
		}
		if r.State != want {
			t.Errorf("after retirement replica %s (%s) is %s, want %s", r.ID, r.Model, r.State, want)
		}
	}
	if free, total, err := ac.FreeGPUs(ctx); err != nil || free != 2 || total != 4 {
		t.Fatalf("agent GPUs free after retirement = %d of %d, %v; want 2 of 4 (model-v4 keeps 2)", free, total, err)
	}
	if pool := poolOf(t, c.listen); pool != "blue" {
		t.Fatalf("after retirement traffic goes to %s, want blue", pool)
	}
}

// TestRetentionModeStopRetiresAtOnce: with rollout.retention_mode stop a
// promotion retires the old pool at once, whatever rollout.retention says:
// no rollback, and the old pool's replicas launched through the agent are
// stopped (exited, their GPUs free) with no retire command.
func TestRetentionModeStopRetiresAtOnce(t *testing.T) {
	ac, client, c := serveWithAgent(t, 4, "  retention: 1h\n  retention_mode: stop\n  drain_timeout: 5s\n")
	ctx := context.Background()
	for i, model := range []string{"model-v3", "model-v4"} {
		if _, err := client.Deploy(ctx, api.DeployRequest{Model: model}); err != nil {
			t.Fatalf("deploy %s: %v", model, err)
		}
		waitDeployment(t, client, "ready", 30*time.Second)
		if _, err := client.Promote(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Rollback(ctx); err == nil {
			t.Fatalf("rollback after promote #%d with retention_mode stop was accepted", i+1)
		}
		d := waitDeployment(t, client, "completed", 30*time.Second)
		if want := []string{"green", "blue"}[i]; d.Pool != want {
			t.Fatalf("deployment %d went to %s, want %s", i+1, d.Pool, want)
		}
	}
	rs, err := ac.Replicas(ctx)
	if err != nil || len(rs) != 4 {
		t.Fatalf("agent replicas = %+v, %v; want 4", rs, err)
	}
	for _, r := range rs {
		want := agent.StateRunning
		if r.Model == "model-v3" {
			want = agent.StateExited
		}
		if r.State != want {
			t.Errorf("replica %s (%s) is %s, want %s", r.ID, r.Model, r.State, want)
		}
	}
	if free, _, err := ac.FreeGPUs(ctx); err != nil || free != 2 {
		t.Fatalf("free GPUs = %d, %v; want 2", free, err)
	}
	if pool := poolOf(t, c.listen); pool != "blue" {
		t.Fatalf("traffic goes to %s, want blue", pool)
	}
}

// TestDeployStopsAbortedLaunchBeforeRelaunch: a launched deployment that
// is aborted leaves its replicas in the standby pool; the next deploy
// without --replica stops them through the agent (freeing their GPUs)
// before it launches its own.
func TestDeployStopsAbortedLaunchBeforeRelaunch(t *testing.T) {
	ac, client, _ := serveWithAgent(t, 2, "")
	ctx := context.Background()
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v3"}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	if _, err := client.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	// Both GPUs are still held by model-v3: without the stop this launch
	// finds no free GPU.
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v4"}); err != nil {
		t.Fatalf("second deploy: %v", err)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	rs, err := ac.Replicas(ctx)
	if err != nil || len(rs) != 4 {
		t.Fatalf("agent replicas = %+v, %v; want 4", rs, err)
	}
	for _, r := range rs {
		want := agent.StateRunning
		if r.Model == "model-v3" {
			want = agent.StateExited
		}
		if r.State != want {
			t.Errorf("replica %s (%s) is %s, want %s", r.ID, r.Model, r.State, want)
		}
	}
}

// TestStatusShowsLaunchProgress: while a deploy without --replica waits
// for its replicas to load, the status (API and `cutover status`) says so,
// and a second such deploy is refused; once they run the deploy answers
// and the note is gone.
func TestStatusShowsLaunchProgress(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "loaded")
	_, agentAddr, tok := startAgentProcGated(t, 2, gate)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf(`rollout:
  warmup: {requests: []}
agents:
  - {name: gpu-a, url: "http://%s", token_file: %s}
launch: {replicas: 2, ready_timeout: 2m}
`, agentAddr, tok)}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v3"})
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := client.Status(ctx)
		if err == nil && strings.Contains(st.Launching, "launching replicas of model-v3") && strings.Contains(st.Launching, "0 of 2 running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the launch: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, stdout, stderr := runCLI(t, env, "status", "--admin", "http://"+c.admin)
	if code != 0 || !strings.Contains(stdout, "launching: launching replicas of model-v3") {
		t.Fatalf("cutover status while launching: exit %d\n%s%s", code, stdout, stderr)
	}
	_, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v4"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || ae.ErrorBody.Code != "launch_in_progress" {
		t.Fatalf("second deploy while launching = %v, want 409 launch_in_progress", err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deploy: %v", err)
	}
	st, err := client.Status(ctx)
	if err != nil || st.Launching != "" || st.Deployment == nil || st.Deployment.Model != "model-v3" {
		t.Fatalf("status after the launch: %+v %v", st, err)
	}
}

// TestDeployWithReplicaStopsStandbyLaunch: a deploy with --replica into a
// standby pool still holding replicas an aborted launch started stops
// them through the agent once the deployment is made.
func TestDeployWithReplicaStopsStandbyLaunch(t *testing.T) {
	ac, client, _ := serveWithAgent(t, 2, "")
	ctx := context.Background()
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v3"}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, client, "ready", 30*time.Second)
	if _, err := client.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Deploy(ctx, api.DeployRequest{Model: "model-v4", Replicas: mockPool(t, "model-v4", 1)}); err != nil {
		t.Fatal(err)
	}
	rs, err := ac.Replicas(ctx)
	if err != nil || len(rs) != 2 {
		t.Fatalf("agent replicas = %+v, %v; want 2", rs, err)
	}
	for _, r := range rs {
		if r.State != agent.StateExited {
			t.Errorf("replica %s (%s) is %s, want exited", r.ID, r.Model, r.State)
		}
	}
	if free, _, err := ac.FreeGPUs(ctx); err != nil || free != 2 {
		t.Fatalf("free GPUs = %d, %v; want 2", free, err)
	}
}
