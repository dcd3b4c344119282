package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/agent"
)

// load sends requests through the gateway from a few workers, half of
// them streams, until stop: failed counts errors and non-200 answers, cut
// the streams that ended without their [DONE].
type load struct {
	sent, failed, cut atomic.Int64
	first             atomic.Value // the first failure, a string
	stop              chan struct{}
	wg                sync.WaitGroup
}

// startLoad starts 4 workers against the traffic listener addr.
func startLoad(addr string) *load {
	l := &load{stop: make(chan struct{})}
	for i := range 4 {
		stream := i%2 == 1
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(addr, stream)
			}
		})
	}
	return l
}

func (l *load) one(addr string, stream bool) {
	body := `{"model":"llama","messages":[{"role":"user","content":"hi"}]}`
	if stream {
		body = `{"model":"llama","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	}
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
	l.sent.Add(1)
	if err != nil {
		l.failed.Add(1)
		l.first.CompareAndSwap(nil, err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		l.failed.Add(1)
		l.first.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
		return
	}
	if !stream {
		_, _ = io.Copy(io.Discard, resp.Body)
		return
	}
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "data: [DONE]" {
			done = true
		}
	}
	if !done {
		l.cut.Add(1)
		l.first.CompareAndSwap(nil, fmt.Sprintf("stream cut: %v", sc.Err()))
	}
}

// waitSent waits until n more requests were sent than at the call.
func (l *load) waitSent(t *testing.T, n int64) {
	t.Helper()
	want := l.sent.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.sent.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the load sent %d requests, want %d", l.sent.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// end stops the load and fails t if a request failed or a stream was cut.
func (l *load) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if f, c := l.failed.Load(), l.cut.Load(); f != 0 || c != 0 {
		t.Fatalf("%d failed and %d cut of %d requests; first: %v", f, c, l.sent.Load(), l.first.Load())
	}
}

// capacityGateway is a gateway with one agent of 4 GPUs whose replicas
// are this binary's mock-llm, launching 2 replicas per deployment.
type capacityGateway struct {
	p      *proc
	client *api.Client
	agent  *agent.Client
	listen string
	env    []string
	admin  []string
}

func startCapacityGateway(t *testing.T, rollout string) *capacityGateway {
	t.Helper()
	ac, agentAddr, tok := startAgentProc(t, 4)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf(`rollout:
  retention: 1h
  drain_timeout: 5s
  warmup: {requests: []}
%sagents:
  - {name: gpu-a, url: "http://%s", token_file: %s}
launch: {replicas: 2, gpus_per_replica: 1, ready_timeout: 1m}
`, rollout, agentAddr, tok)}
	g := &capacityGateway{agent: ac, listen: c.listen, env: []string{"CUTOVER_ADMIN_TOKEN=secret"}, admin: []string{"--admin", "http://" + c.admin}}
	g.p = start(t, g.env, "serve", "--config", c.write(t))
	g.client = &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, g.p, g.client)
	return g
}

// deployPromote deploys model without replicas, checks that the agent
// runs 2 new replicas of it each on its own GPU with CUDA_VISIBLE_DEVICES
// set to it, and promotes the deployment once ready. It returns them.
func (g *capacityGateway) deployPromote(t *testing.T, model string) []agent.Replica {
	t.Helper()
	ctx := context.Background()
	if code, out, errOut := runCLI(t, g.env, append([]string{"deploy", "--model", model}, g.admin...)...); code != 0 {
		t.Fatalf("deploy %s: exit %d\n%s%s", model, code, out, errOut)
	}
	launched := g.replicas(t, model, agent.StateRunning)
	if len(launched) != 2 {
		t.Fatalf("%d replicas of %s running, want 2", len(launched), model)
	}
	for _, r := range launched {
		if len(r.GPUs) != 1 {
			t.Fatalf("replica %s on GPUs %v, want one", r.ID, r.GPUs)
		}
		if got, want := childEnv(t, r.PID, "CUDA_VISIBLE_DEVICES"), strconv.Itoa(r.GPUs[0]); got != want {
			t.Fatalf("replica %s (pid %d) has CUDA_VISIBLE_DEVICES=%q, want %q (its GPU)", r.ID, r.PID, got, want)
		}
	}
	waitDeployment(t, g.client, "ready", 30*time.Second)
	if _, err := g.client.Promote(ctx); err != nil {
		t.Fatalf("promote %s: %v", model, err)
	}
	return launched
}

// replicas lists the agent's replicas of model in state.
func (g *capacityGateway) replicas(t *testing.T, model string, state agent.State) []agent.Replica {
	t.Helper()
	rs, err := g.agent.Replicas(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []agent.Replica
	for _, r := range rs {
		if r.Model == model && r.State == state {
			out = append(out, r)
		}
	}
	return out
}

// freeGPUs is how many of the agent's GPUs are free.
func (g *capacityGateway) freeGPUs(t *testing.T) int {
	t.Helper()
	free, _, err := g.agent.FreeGPUs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return free
}

// waitNote waits until the deployment's status line has want.
func (g *capacityGateway) waitNote(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := g.client.Status(context.Background())
		if err == nil && st.Deployment != nil && strings.Contains(st.Deployment.Waiting, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status never said %q: %+v %v", want, st.Deployment, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// retire ends the old pool's retention with the CLI and waits for it.
func (g *capacityGateway) retire(t *testing.T) {
	t.Helper()
	if code, out, errOut := runCLI(t, g.env, append([]string{"retire", "--timeout", "30s"}, g.admin...)...); code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("retire: exit %d\n%s%s", code, out, errOut)
	}
}

// childEnv returns the value of key in the environment of process pid.
func childEnv(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// gone fails t unless every replica in rs has exited and its process is
// gone.
func (g *capacityGateway) gone(t *testing.T, rs []agent.Replica) {
	t.Helper()
	all, err := g.agent.Replicas(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		for _, now := range all {
			if now.ID == r.ID && now.State != agent.StateExited {
				t.Errorf("replica %s (%s) is %s, want exited", r.ID, r.Model, now.State)
			}
		}
		if err := syscall.Kill(r.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("replica %s: process %d still there (kill -0: %v)", r.ID, r.PID, err)
		}
	}
}

// TestRetentionShrinkEndToEnd: with rollout.retention_mode shrink and
// shrink_to 1, deployments launched through a real agent are promoted and
// the retained pool shrinks to one replica (the other stopped, its GPU
// free; a configured replica no agent started is kept, and the status
// says so). A rollback under load first starts the missing replica, waits
// until it serves, then switches: no request fails, no stream is cut, and
// the answer and history carry the restore. With --now it switches at
// once onto the one replica left, and the missing one is started in the
// background. Promoted again, the retirement stops every replica of the
// old pool: GPUs free, processes gone.
func TestRetentionShrinkEndToEnd(t *testing.T) {
	for _, now := range []bool{false, true} {
		t.Run(fmt.Sprintf("now=%v", now), func(t *testing.T) {
			g := startCapacityGateway(t, "  retention_mode: shrink\n  shrink_to: 1\n")
			ctx := context.Background()
			v2 := g.deployPromote(t, "model-v2") // into green; blue was configured
			g.waitNote(t, "kept (not started by an agent): ")
			g.retire(t)
			g.deployPromote(t, "model-v3") // into blue; green (model-v2) retained
			g.waitNote(t, "retained pool green shrunk to 1 of 2 replica(s)")
			left := g.replicas(t, "model-v2", agent.StateRunning)
			if len(left) != 1 || g.freeGPUs(t) != 1 {
				t.Fatalf("after the shrink: %d model-v2 replicas running, %d GPU(s) free; want 1 and 1", len(left), g.freeGPUs(t))
			}
			for _, r := range v2 {
				if r.ID != left[0].ID {
					g.gone(t, []agent.Replica{r})
				}
			}
			if st, _ := g.client.Status(ctx); len(st.Pools["green"].Replicas) != 1 || st.Actions["rollback"].Restore != 1 || !strings.Contains(st.Actions["rollback"].Reason, "first brought back to its 2 replicas") {
				t.Fatalf("status after the shrink: green %+v, rollback %+v", st.Pools["green"], st.Actions["rollback"])
			}
			if code, out, _ := runCLI(t, g.env, append([]string{"status"}, g.admin...)...); code != 0 || !strings.Contains(out, "shrunk to 1 of 2 replica(s)") {
				t.Fatalf("cutover status (exit %d) does not show the shrunk pool:\n%s", code, out)
			}

			// Roll back with the CLI under load.
			l := startLoad(g.listen)
			l.waitSent(t, 20)
			args := append([]string{"rollback", "--json"}, g.admin...)
			if now {
				args = append(args, "--now")
			}
			code, out, errOut := runCLI(t, g.env, args...)
			var sw api.SwitchResult
			if err := json.Unmarshal([]byte(out), &sw); code != 0 || err != nil || sw.Live != "green" {
				t.Fatalf("cutover %v: exit %d, %+v %v\n%s%s", args, code, sw, err, out, errOut)
			}
			l.waitSent(t, 20)
			l.end(t)
			if got := poolOf(t, g.listen); got != "green" {
				t.Fatalf("traffic on %s after the rollback", got)
			}
			if now {
				// It switched at once onto the one replica left, then the
				// missing one is started in the background.
				if sw.Restored != 0 {
					t.Fatalf("rollback --now restored %d before switching", sw.Restored)
				}
				rb, _ := g.events(t, "rollback", "restore")
				if rb == nil || !strings.Contains(rb.Reason, "on 1 of its 2 replicas at once (--now)") {
					t.Fatalf("rollback event %+v", rb)
				}
				g.waitHealthy(t, "green", 2)
				if _, restore := g.events(t, "rollback", "restore"); restore == nil || restore.Revision < rb.Revision || !strings.Contains(restore.Reason, "in the background") {
					t.Fatalf("restore event %+v after rollback %+v", restore, rb)
				}
			}
			running := g.replicas(t, "model-v2", agent.StateRunning)
			st, err := g.client.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if now {
				if len(running) != 2 {
					t.Fatalf("%d model-v2 replicas running after the background restore, want 2", len(running))
				}
			} else {
				if sw.Restored != 1 || sw.RestoreMS <= 0 || len(running) != 2 || st.Pools["green"].HealthyReplicas != 2 {
					t.Fatalf("rollback: restored %d in %dms, %d model-v2 running, green %d/%d healthy; want 1 restored, 2 running and healthy",
						sw.Restored, sw.RestoreMS, len(running), st.Pools["green"].HealthyReplicas, len(st.Pools["green"].Replicas))
				}
				g.restoredBeforeSwitch(t)
			}

			// Promote again: blue's rolled-back replicas make way for
			// model-v4; then retiring green frees all of its GPUs.
			g.deployPromote(t, "model-v4")
			g.retire(t)
			g.gone(t, running)
			if n := len(g.replicas(t, "model-v2", agent.StateRunning)); n != 0 || g.freeGPUs(t) != 2 {
				t.Fatalf("after the retirement: %d model-v2 replicas running, %d GPUs free; want 0 and 2 (model-v4 holds 2)", n, g.freeGPUs(t))
			}
		})
	}
}

// events returns the last history event of each action, nil for none.
func (g *capacityGateway) events(t *testing.T, actions ...string) (first, second *api.Event) {
	t.Helper()
	h, err := g.client.History(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]*api.Event{}
	for i, e := range h.Events {
		last[e.Action] = &h.Events[i]
	}
	return last[actions[0]], last[actions[1]]
}

// waitHealthy waits until pool has n replicas, all healthy.
func (g *capacityGateway) waitHealthy(t *testing.T, pool string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := g.client.Status(context.Background())
		if err == nil && len(st.Pools[pool].Replicas) == n && st.Pools[pool].HealthyReplicas == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had %d healthy replicas: %+v %v", pool, n, st.Pools[pool], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restoredBeforeSwitch checks in the history that the restore was
// recorded before the rollback, which carries its time.
func (g *capacityGateway) restoredBeforeSwitch(t *testing.T) {
	t.Helper()
	rollback, restore := g.events(t, "rollback", "restore")
	if restore == nil || rollback == nil || restore.Revision >= rollback.Revision ||
		!strings.Contains(rollback.Reason, "after restoring green to full size: 1 replica(s) started through the agents and serving model-v2 in ") {
		t.Fatalf("history: restore %+v, rollback %+v; want the restore first and its time in the rollback", restore, rollback)
	}
}

// TestRetentionStopEndToEnd: with rollout.retention_mode stop each
// promotion retires the old pool at once: its replicas launched through
// the agent are stopped (GPUs free, processes gone), and a rollback is
// refused with 409 naming the mode, through the API and the CLI.
func TestRetentionStopEndToEnd(t *testing.T) {
	g := startCapacityGateway(t, "  retention_mode: stop\n")
	ctx := context.Background()
	v2 := g.deployPromote(t, "model-v2")
	waitDeployment(t, g.client, "completed", 30*time.Second)
	g.deployPromote(t, "model-v3")
	_, err := g.client.Rollback(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || !strings.Contains(ae.Message, "rollout.retention_mode is stop") {
		t.Fatalf("rollback after a promotion with retention_mode stop = %v, want 409 naming the mode", err)
	}
	waitDeployment(t, g.client, "completed", 30*time.Second)
	code, out, errOut := runCLI(t, g.env, append([]string{"rollback"}, g.admin...)...)
	if code == 0 || !strings.Contains(out+errOut, "rollout.retention_mode is stop") {
		t.Fatalf("cutover rollback after the retirement: exit %d\n%s%s", code, out, errOut)
	}
	g.gone(t, v2)
	if g.freeGPUs(t) != 2 {
		t.Fatalf("%d GPUs free, want 2 (model-v3 holds 2)", g.freeGPUs(t))
	}
	if got := poolOf(t, g.listen); got != "blue" {
		t.Fatalf("traffic on %s, want blue (model-v3)", got)
	}
}

// TestPrintSwitchSaysWhatCameFirst: rollback's text output says what the
// gateway did before switching (a restore, a wake).
func TestPrintSwitchSaysWhatCameFirst(t *testing.T) {
	var b strings.Builder
	printSwitch(&b, &api.SwitchResult{Action: "rollback", Live: "green", Previous: "blue", Revision: 9, Restored: 1, RestoreMS: 41200, Woke: 2, WakeMS: 1500})
	for _, want := range []string{"rollback: green is live (was blue), revision 9",
		"first brought green back to full size: 1 replica(s) started through the agents, serving after 41.2s",
		"first woke 2 replica(s) of green in 1.5s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
