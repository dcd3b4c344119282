package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// rolloutEnv is an env with fast health checks and rollout settings for
// deployments, plus spare replicas of a third version to deploy.
func rolloutEnv(t *testing.T, edit func(*config.Config)) (*env, []*replica) {
	t.Helper()
	e := newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 4}, edit: func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Health.Timeout = config.Duration(time.Second)
		c.Rollout.Retention = config.Duration(time.Hour)
		c.Rollout.DrainTimeout = config.Duration(10 * time.Second)
		c.Rollout.Warmup.Requests = []config.WarmupRequest{{Prompt: "warm", MaxTokens: 2}, {Prompt: "warm", Stream: true, MaxTokens: 2}}
		if edit != nil {
			edit(c)
		}
	}})
	var spare []*replica
	for range 2 {
		spare = append(spare, startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, ""))
	}
	return e, spare
}

func urls(rs []*replica) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.URL())
	}
	return out
}

// deployReady deploys model-v3 on spare and waits until it is ready.
func (e *env) deployReady(t *testing.T, spare []*replica) {
	t.Helper()
	if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, "ready", 20*time.Second)
}

// waitPhase waits until the latest deployment is in phase.
func (e *env) waitPhase(t *testing.T, phase string, timeout time.Duration) *api.Deployment {
	t.Helper()
	var d *api.Deployment
	waitFor(t, "phase "+phase, timeout, func() bool {
		d = e.gw.Controller().Status().Deployment
		if d != nil && d.Phase != phase && isTerminal(d.Phase) && d.Phase != phase {
			t.Fatalf("deployment ended %s (%s) while waiting for %s", d.Phase, d.Reason, phase)
		}
		return d != nil && d.Phase == phase
	})
	return d
}

func isTerminal(p string) bool {
	return p == "completed" || p == "failed" || p == "aborted" || p == "rolled_back"
}

func hookCmd(file string) []config.Hook {
	return []config.Hook{{Command: []string{"sh", "-c", `echo "$CUTOVER_EVENT $CUTOVER_DEPLOYMENT $CUTOVER_POOL $CUTOVER_MODEL $CUTOVER_REPLICAS $CUTOVER_REVISION" >> ` + file}}}
}

func readLines(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " | "))
}

// TestDeploymentLifecycle: deploy → warming → ready → promote → retention
// ends → drained → on_retire hook ran → completed; rollback then refused.
func TestDeploymentLifecycle(t *testing.T) {
	evidence := filepath.Join(t.TempDir(), "hooks.log")
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Rollout.Retention = config.Duration(time.Hour) // ended below by moving the clock
		c.Hooks = map[string][]config.Hook{"on_deploy": hookCmd(evidence), "on_promote": hookCmd(evidence), "on_retire": hookCmd(evidence)}
	})
	ctx := context.Background()
	res, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare)})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Deployment
	if d.Pool != "green" || d.Phase != "warming" || d.DeadlineKind != "progress" || d.Deadline.IsZero() {
		t.Fatalf("new deployment: %+v", d)
	}
	// A second deploy while one is in progress is refused, naming it.
	_, err = e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v4", Replicas: []string{"http://127.0.0.1:9"}})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || !strings.Contains(ae.Message, d.ID) {
		t.Fatalf("second deploy: %v, want 409 naming %s", err, d.ID)
	}
	// Nothing reaches the candidate before the promotion.
	if res, err := e.chat(ctx, "llama", "before", false, ""); err != nil || res.pool != "blue" {
		t.Fatalf("traffic during warming: %+v %v", res, err)
	}
	e.waitPhase(t, "ready", 20*time.Second)
	for _, r := range spare {
		if r.mock.Stats().Requests < 2 {
			t.Errorf("replica %s got %d requests; warm-up sends 2", r.URL(), r.mock.Stats().Requests)
		}
	}
	sw, err := e.admin.Promote(ctx)
	if err != nil || sw.Live != "green" {
		t.Fatalf("promote: %+v %v", sw, err)
	}
	if res, err := e.chat(ctx, "llama", "after", true, ""); err != nil || res.pool != "green" || res.model != "model-v3" {
		t.Fatalf("traffic after promote: %+v %v", res, err)
	}
	d2 := e.gw.Controller().Status().Deployment
	if d2.Phase != "promoted" || d2.DeadlineKind != "retention" || !d2.Deadline.Equal(d2.RetainUntil) {
		t.Fatalf("after promote: %+v", d2)
	}
	if _, err := e.admin.Promote(ctx); !errors.As(err, &ae) || ae.StatusCode != 409 || !strings.Contains(ae.Message, "already promoted") {
		t.Errorf("a second promote: %v, want 409 saying it is already promoted", err)
	}
	e.clock.advance(time.Hour) // the retention ends
	done := e.waitPhase(t, "completed", 20*time.Second)
	if done.RetiredAt.Before(d2.RetainUntil) {
		t.Errorf("retired at %s, before the retention end %s", done.RetiredAt, d2.RetainUntil)
	}
	lines := strings.Split(strings.TrimSpace(mustRead(t, evidence)), "\n")
	want := []string{"on_deploy " + d.ID + " green model-v3", "on_promote " + d.ID + " green model-v3", "on_retire " + d.ID + " blue model-v1 " + strings.Join(urls(e.pools["blue"]), ",")}
	if len(lines) != len(want) {
		t.Fatalf("hook evidence:\n%s\nwant %d lines", strings.Join(lines, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("hook %d ran with %q, want prefix %q", i, lines[i], w)
		}
	}
	_, err = e.admin.Rollback(ctx)
	if !errors.As(err, &ae) || ae.StatusCode != 409 || !strings.Contains(ae.Message, "retired at") {
		t.Fatalf("rollback after retirement: %v, want 409 with the time", err)
	}
	st := e.gw.Controller().Status()
	if len(st.Pools["blue"].Replicas) != 0 || st.Live != "green" {
		t.Errorf("after completion: blue %+v live %s", st.Pools["blue"], st.Live)
	}
	h, _ := e.admin.History(ctx, 0)
	var phases []string
	for _, ev := range h.Events {
		if ev.Deployment == d.ID && (ev.Action == "phase" || ev.Action == "promote" || ev.Action == "deploy") {
			phases = append(phases, ev.Action+":"+ev.To)
		}
	}
	if got := strings.Join(phases, " "); got != "deploy:warming phase:ready promote:green phase:retiring phase:completed" {
		t.Errorf("history: %s", got)
	}
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRollbackInsideRetentionUnderLoad: a rollback during retention is
// instant and fails no request.
func TestRollbackInsideRetentionUnderLoad(t *testing.T) {
	e, spare := rolloutEnv(t, nil)
	ctx := context.Background()
	e.deployReady(t, spare)
	var (
		stop           atomic.Bool
		wg             sync.WaitGroup
		failed, total  atomic.Int64
		afterRollback  atomic.Int64
		rolledBackAt   atomic.Int64
		wrongAfterBack atomic.Int64
	)
	for i := range 32 {
		wg.Go(func() {
			for n := 0; !stop.Load() && n < 3000; n++ {
				start := time.Now().UnixNano()
				res, err := e.chat(ctx, "llama", fmt.Sprintf("%d-%d", i, n), n%2 == 0, "")
				total.Add(1)
				if err != nil || res.status != 200 {
					failed.Add(1)
				}
				if at := rolledBackAt.Load(); at != 0 && start > at {
					afterRollback.Add(1)
					if res.pool != "blue" {
						wrongAfterBack.Add(1)
					}
				}
			}
		})
	}
	waitFor(t, "load", 30*time.Second, func() bool { return total.Load() > 100 })
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "load on green", 30*time.Second, func() bool { return e.gw.Controller().Status().Pools["green"].InFlight > 0 })
	start := time.Now()
	res, err := e.admin.Rollback(ctx)
	took := time.Since(start)
	rolledBackAt.Store(time.Now().UnixNano())
	if err != nil || res.Live != "blue" {
		t.Fatalf("rollback: %+v %v", res, err)
	}
	waitFor(t, "requests after rollback", 30*time.Second, func() bool { return afterRollback.Load() > 200 })
	stop.Store(true)
	wg.Wait()
	t.Logf("rollback took %s; %d requests, %d failed", took, total.Load(), failed.Load())
	if failed.Load() > 0 || wrongAfterBack.Load() > 0 {
		t.Fatalf("%d failed, %d after the rollback served by green", failed.Load(), wrongAfterBack.Load())
	}
	if d := e.gw.Controller().Status().Deployment; d.Phase != "rolled_back" {
		t.Errorf("deployment %s after rollback", d.Phase)
	}
}

// TestDeploymentFailsInWarming: a wrong model id fails at once with that
// reason; a replica that never becomes healthy fails at the progress
// deadline. Neither gets client traffic, and on_fail runs.
func TestDeploymentFailsInWarming(t *testing.T) {
	tests := []struct {
		name     string
		replicas func(t *testing.T) []*replica
		// waiting: the deployment says this while it waits; then the
		// clock moves past the progress deadline. "": it fails by itself.
		waiting string
		want    []string
	}{
		{"wrong model", func(t *testing.T) []*replica {
			return []*replica{startReplica(t, mockllm.Config{Model: "model-v3-typo"}, "")}
		}, "", []string{"wrong model", `"model-v3"`, "model-v3-typo"}},
		{"never healthy", func(t *testing.T) []*replica {
			return []*replica{startReplica(t, mockllm.Config{Model: "model-v3", StartupPeriod: time.Hour}, "")}
		}, "status 503", []string{"progress deadline", "status 503"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evidence := filepath.Join(t.TempDir(), "fail.log")
			e, _ := rolloutEnv(t, func(c *config.Config) {
				c.Rollout.ProgressDeadline = config.Duration(time.Hour) // passed below by moving the clock
				c.Hooks = map[string][]config.Hook{"on_fail": hookCmd(evidence)}
			})
			rs := tt.replicas(t)
			if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(rs)}); err != nil {
				t.Fatal(err)
			}
			if tt.waiting != "" {
				waitFor(t, "the deployment to say "+tt.waiting, 20*time.Second, func() bool {
					d := e.gw.Controller().Status().Deployment
					return d.Phase == "warming" && strings.Contains(d.Waiting, tt.waiting)
				})
				e.clock.advance(time.Hour)
			}
			d := e.waitPhase(t, "failed", 20*time.Second)
			for _, w := range append(tt.want, rs[0].URL()) {
				if !strings.Contains(d.Reason, w) {
					t.Errorf("reason %q lacks %q", d.Reason, w)
				}
			}
			waitFor(t, "on_fail hook", 10*time.Second, func() bool { return len(readLines(t, evidence)) > 0 })
			if res, err := e.chat(context.Background(), "llama", "x", false, ""); err != nil || res.pool != "blue" {
				t.Fatalf("traffic: %+v %v", res, err)
			}
			if st := e.gw.Controller().Status(); st.Live != "blue" {
				t.Fatalf("live %s after a failed deployment", st.Live)
			}
			if _, err := e.admin.Promote(context.Background()); err == nil {
				// A failed deployment leaves nothing promotable unless the
				// pool happens to serve; a wrong-model pool must not.
				if tt.name == "wrong model" {
					t.Fatal("promote of a wrong-model pool succeeded")
				}
			}
		})
	}
}

// TestConcurrentDeploys: exactly one of many simultaneous deploys wins.
// They all name the model the spare replicas serve, so the winner stays in
// progress (a wrong model would fail at once and let a later deploy win).
func TestConcurrentDeploys(t *testing.T) {
	e, spare := rolloutEnv(t, nil)
	var wg sync.WaitGroup
	var won, refused atomic.Int64
	for range 8 {
		wg.Go(func() {
			_, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(spare)})
			var ae *api.Error
			switch {
			case err == nil:
				won.Add(1)
			case errors.As(err, &ae) && ae.StatusCode == 409:
				refused.Add(1)
			default:
				t.Errorf("deploy: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("%d won, %d refused; want 1 and 7", won.Load(), refused.Load())
	}
	if n := len(e.gw.Controller().Deployments()); n != 1 {
		t.Fatalf("%d deployments recorded", n)
	}
}

// TestFailingRetireHookIsRetriedAndVisible: on_retire keeps failing, the
// deployment stays retiring with the error and attempt count in status;
// once the hook can pass, a retry completes it.
func TestFailingRetireHookIsRetriedAndVisible(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "gpu-free")
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Rollout.Retention = config.Duration(0)
		c.Hooks = map[string][]config.Hook{"on_retire": {{Command: []string{"sh", "-c", "test -f " + marker + " || { echo 'GPU still busy' >&2; exit 3; }"}}}}
	})
	ctx := context.Background()
	e.deployReady(t, spare)
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	var d *api.Deployment
	waitFor(t, "a failed on_retire attempt", 20*time.Second, func() bool {
		d = e.gw.Controller().Status().Deployment
		return d.RetireAttempts >= 1
	})
	if d.Phase != "retiring" || !strings.Contains(d.RetireError, "exit code 3") || !strings.Contains(d.RetireError, "GPU still busy") || d.NextRetireAttempt.IsZero() {
		t.Fatalf("retiring deployment: phase %s error %q next %s", d.Phase, d.RetireError, d.NextRetireAttempt)
	}
	if len(d.Hooks) == 0 || d.Hooks[len(d.Hooks)-1].OK {
		t.Errorf("hook outcomes not recorded: %+v", d.Hooks)
	}
	// Rollback is over: the retention ended.
	if _, err := e.admin.Rollback(ctx); err == nil {
		t.Fatal("rollback during retirement succeeded")
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Retire(ctx, false); err != nil {
		t.Fatal(err)
	}
	done := e.waitPhase(t, "completed", 20*time.Second)
	if done.RetireError != "" {
		t.Errorf("completed with retire error %q", done.RetireError)
	}
}

// TestBeforePromoteHookBlocks: a failing before_promote hook refuses the
// promotion with its output; the deployment stays ready.
func TestBeforePromoteHookBlocks(t *testing.T) {
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Hooks = map[string][]config.Hook{"before_promote": {{Command: []string{"sh", "-c", "echo 'eval score 0.41 < 0.80'; exit 1"}}}}
	})
	ctx := context.Background()
	e.deployReady(t, spare)
	_, err := e.admin.Promote(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || !strings.Contains(ae.Message, "eval score 0.41") {
		t.Fatalf("promote: %v, want 409 with the hook output", err)
	}
	if st := e.gw.Controller().Status(); st.Live != "blue" || st.Deployment.Phase != "ready" {
		t.Fatalf("after blocked promote: live %s phase %s", st.Live, st.Deployment.Phase)
	}
}

// TestAutoPromote promotes a ready deployment by itself.
func TestAutoPromote(t *testing.T) {
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Rollout.AutoPromote = true
		c.Rollout.AutoPromoteAfter = config.Duration(300 * time.Millisecond)
	})
	if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatal(err)
	}
	d := e.waitPhase(t, "promoted", 20*time.Second)
	if d.PromotedAt.Sub(d.ReadyAt) < 300*time.Millisecond {
		t.Errorf("promoted %s after ready, before auto_promote_after", d.PromotedAt.Sub(d.ReadyAt))
	}
	if e.gw.Controller().Status().Live != "green" {
		t.Error("auto-promotion did not switch traffic")
	}
}

// TestRetainedPoolAndForce: deploying over the retained pool is refused
// with the retention end; --force ends the retention, retires the old pool
// and then starts the new deployment.
func TestRetainedPoolAndForce(t *testing.T) {
	evidence := filepath.Join(t.TempDir(), "retire.log")
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Hooks = map[string][]config.Hook{"on_retire": hookCmd(evidence)}
	})
	ctx := context.Background()
	e.deployReady(t, spare)
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	d1 := e.gw.Controller().Status().Deployment
	next := []*replica{startReplica(t, mockllm.Config{Model: "model-v4", Tokens: 4}, "")}
	_, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v4", Replicas: urls(next)})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || !strings.Contains(ae.Message, d1.RetainUntil.UTC().Format(time.RFC3339)) {
		t.Fatalf("deploy over retained pool: %v, want 409 with %s", err, d1.RetainUntil)
	}
	res, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v4", Replicas: urls(next), Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Note, "rollback") || res.Deployment.Phase != "pending" || res.Deployment.Pool != "blue" {
		t.Fatalf("forced deploy: %+v", res)
	}
	e.waitPhase(t, "ready", 20*time.Second)
	if got := mustRead(t, evidence); !strings.Contains(got, "on_retire "+d1.ID+" blue model-v1") {
		t.Errorf("old pool not retired before the new deployment: %q", got)
	}
	if d, _ := e.admin.Deployment(ctx, d1.ID); d.Phase != "completed" || !strings.Contains(d.Reason, "retired") {
		t.Errorf("first deployment: %s %s", d.Phase, d.Reason)
	}
}

// TestRetirementPostponedWhileLiveUnhealthy never retires the only healthy
// copy: with the live pool down, retention end waits and rollback works.
func TestRetirementPostponedWhileLiveUnhealthy(t *testing.T) {
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Rollout.Retention = config.Duration(time.Hour) // ended below by moving the clock
		c.Rollout.MinReady = 1
	})
	ctx := context.Background()
	e.deployReady(t, spare)
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range spare {
		r.mock.SetFailHealth(true)
	}
	waitFor(t, "the live pool to be marked down", 10*time.Second, func() bool { return e.gw.Controller().Status().Pools["green"].HealthyReplicas == 0 })
	if d := e.gw.Controller().Status().Deployment; d.Phase != "promoted" {
		t.Fatalf("phase %s before the retention ended", d.Phase)
	}
	e.clock.advance(time.Hour) // the retention ends
	var d *api.Deployment
	waitFor(t, "retirement postponed", 20*time.Second, func() bool {
		d = e.gw.Controller().Status().Deployment
		return strings.Contains(d.Waiting, "postponed")
	})
	if d.Phase != "promoted" {
		t.Fatalf("phase %s, want promoted (postponed)", d.Phase)
	}
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatalf("rollback while retirement is postponed: %v", err)
	}
}

// TestAbortBeforeCutover: the candidate never received client traffic.
func TestAbortBeforeCutover(t *testing.T) {
	e, spare := rolloutEnv(t, nil)
	ctx := context.Background()
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatal(err)
	}
	d, err := e.admin.Abort(ctx)
	if err != nil || d.Phase != "aborted" || !strings.Contains(d.Reason, "never received client traffic") {
		t.Fatalf("abort: %+v %v", d, err)
	}
	if st := e.gw.Controller().Status(); st.Live != "blue" {
		t.Fatalf("live %s", st.Live)
	}
	if _, err := e.admin.Abort(ctx); err == nil {
		t.Fatal("second abort succeeded")
	}
}

// TestRollbackAbortsPendingDeploy: a forced deploy waiting for the
// retained pool must not take it over once a rollback made it live again
// (a regression: it replaced the live pool's replicas).
func TestRollbackAbortsPendingDeploy(t *testing.T) {
	e, spare := rolloutEnv(t, func(c *config.Config) { c.Rollout.MinReady = 2 })
	ctx := context.Background()
	e.deployReady(t, spare)
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	// Keep the retirement postponed: the new live pool loses a replica.
	spare[0].mock.SetFailHealth(true)
	waitFor(t, "green to lose a replica", 10*time.Second, func() bool { return e.gw.Controller().Status().Pools["green"].HealthyReplicas == 1 })
	next := []*replica{startReplica(t, mockllm.Config{Model: "model-v4", Tokens: 4}, "")}
	res, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v4", Replicas: urls(next), Force: true})
	if err != nil || res.Deployment.Phase != "pending" {
		t.Fatalf("forced deploy: %+v %v", res, err)
	}
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := e.admin.Deployment(ctx, res.Deployment.ID)
	if err != nil || d.Phase != "aborted" {
		t.Fatalf("pending deployment after the rollback: %+v %v", d, err)
	}
	st := e.gw.Controller().Status()
	if st.Live != "blue" || st.Pools["blue"].Model != "model-v1" || len(st.Pools["blue"].Replicas) != 2 {
		t.Fatalf("live pool after rollback: %s %+v", st.Live, st.Pools["blue"])
	}
	if res, err := e.chat(ctx, "llama", "still v1?", false, ""); err != nil || res.model != "model-v1" {
		t.Fatalf("traffic: %+v %v", res, err)
	}
}

// TestRefusedAutoPromotionBacksOff: a failing before_promote hook is not
// run again at every tick (a regression: once per second, forever).
func TestRefusedAutoPromotionBacksOff(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "runs")
	e, spare := rolloutEnv(t, func(c *config.Config) {
		c.Rollout.AutoPromote = true
		c.Hooks = map[string][]config.Hook{"before_promote": {{Command: []string{"sh", "-c", "echo run >> " + counter + "; exit 1"}}}}
		c.Health.Interval = config.Duration(20 * time.Millisecond) // reconcile every 20 ms
	})
	if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, "ready", 20*time.Second)
	// With the clock stopped, the back-off after the first refused try
	// never ends, however often the controller looks.
	e.clock.freeze()
	waitFor(t, "a refused auto-promotion", 20*time.Second, func() bool {
		return strings.Contains(e.gw.Controller().Status().Deployment.Waiting, "auto-promotion blocked")
	})
	ctx := context.Background()
	runs := func() int { return len(strings.Fields(mustRead(t, counter))) }
	for range 50 {
		e.gw.Controller().Reconcile(ctx)
	}
	if n := runs(); n != 1 {
		t.Fatalf("before_promote ran %d times with the clock stopped; want once, then back-off", n)
	}
	// Once the back-off (at most 5 minutes) is over, it is tried again,
	// once however many reconciles race for it (a regression: each that
	// read the back-off before another took the transition lock ran the
	// hook), and then backs off again.
	e.clock.advance(5 * time.Minute)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				e.gw.Controller().Reconcile(ctx)
			}
		})
	}
	wg.Wait()
	waitFor(t, "a second refusal", 20*time.Second, func() bool {
		return strings.Contains(e.gw.Controller().Status().Deployment.Waiting, "next try in 10s")
	})
	for range 50 {
		e.gw.Controller().Reconcile(ctx)
	}
	if n := runs(); n != 2 {
		t.Fatalf("before_promote ran %d times after one back-off; want 2", n)
	}
}

// TestWarmupRetryFollowsTheClock: a failed warm-up is retried 2 s later by
// the controller's clock (a regression: the retry time came from the wall
// clock and was compared with the controller's, so a clock ahead of it
// retried at every reconcile).
func TestWarmupRetryFollowsTheClock(t *testing.T) {
	e, _ := rolloutEnv(t, nil)
	broken := []*replica{
		startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4, ErrorRate: 1}, ""),
		startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4, ErrorRate: 1}, ""),
	}
	e.clock.advance(time.Hour)
	e.clock.freeze()
	if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(broken)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both warm-ups to fail", 20*time.Second, func() bool {
		return strings.Count(e.gw.Controller().Status().Deployment.Waiting, "warm-up failed") == 2
	})
	sent := func() (n uint64) {
		for _, r := range broken {
			n += r.mock.Stats().Requests
		}
		return n
	}
	before := sent()
	for range 50 {
		e.gw.Controller().Reconcile(context.Background())
	}
	if got := sent(); got != before {
		t.Fatalf("%d warm-up requests with the clock stopped, after the first %d; want none before the retry time", got-before, before)
	}
	e.clock.advance(3 * time.Second)
	waitFor(t, "the warm-up retry", 20*time.Second, func() bool { return sent() > before })
}
