package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
)

// TestFleetKill9LeaderHandsOver: three `cutover serve` processes on one
// etcd. The leader is killed with SIGKILL while an on_deploy hook of a
// deployment asked on another gateway runs: another gateway takes over
// after the lease ends, runs the hook again with the same
// CUTOVER_HOOK_RUN_ID and carries the deployment to ready. After the
// promotion that leader is killed too, mid-retention: the last gateway
// retires the old pool at the retention's end (on_retire runs).
func TestFleetKill9LeaderHandsOver(t *testing.T) {
	srv := etcdtest.New(t)
	evidence := filepath.Join(t.TempDir(), "hooks.log")
	blue, green, spare := mockPool(t, "model-v1", 1), mockPool(t, "model-v2", 1), mockPool(t, "model-v3", 1)
	hook := fmt.Sprintf(`echo start $CUTOVER_HOOK_RUN_ID >> %[1]s; sleep 2; echo done $CUTOVER_HOOK_RUN_ID >> %[1]s`, evidence)
	extra := func(name string) string {
		return fmt.Sprintf(`name: %s
etcd:
  endpoints: [%s]
  prefix: /kill9/
  dial_timeout: 1s
  session_ttl: 2s
rollout:
  retention: 4s
  warmup:
    requests: []
hooks:
  on_deploy:
    - command: [sh, -c, %q]
  on_retire:
    - command: [sh, -c, 'echo retire $CUTOVER_HOOK_RUN_ID >> %s']
`, name, srv.Endpoint(), hook, evidence)
	}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	type gw struct {
		name   string
		p      *proc
		client *api.Client
	}
	var gws []*gw
	for _, name := range []string{"gw-a", "gw-b", "gw-c"} {
		c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(), blue: blue, green: green, extra: extra(name)}
		g := &gw{name: name, client: &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}}
		g.p = start(t, env, "serve", "--config", c.write(t))
		waitAdmin(t, g.p, g.client)
		gws = append(gws, g)
	}
	ctx := context.Background()
	status := func(g *gw) *api.Status {
		st, err := g.client.Status(ctx)
		if err != nil {
			return nil
		}
		return st
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		for range 600 {
			if cond() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s", what)
	}
	var leader, other *gw
	poll("a leader with three members", func() bool {
		st := status(gws[0])
		if st == nil || st.Fleet == nil || st.Fleet.Leader == "" || len(st.Fleet.Members) != 3 {
			return false
		}
		for _, g := range gws {
			if g.name == st.Fleet.Leader {
				leader = g
			} else if other == nil {
				other = g
			}
		}
		return leader != nil
	})
	if _, err := other.client.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: spare}); err != nil {
		t.Fatalf("deploy on the follower: %v", err)
	}
	poll("the leader starting the on_deploy hook", func() bool {
		b, _ := os.ReadFile(evidence)
		return strings.Contains(string(b), "start ")
	})
	if err := leader.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var next *gw
	poll("a survivor leading", func() bool {
		st := status(other)
		if st == nil || st.Fleet == nil || st.Fleet.Leader == "" || st.Fleet.Leader == leader.name {
			return false
		}
		for _, g := range gws {
			if g.name == st.Fleet.Leader {
				next = g
			}
		}
		return next != nil
	})
	t.Logf("takeover %s after kill -9 (session_ttl 2s)", time.Since(killed).Round(10*time.Millisecond))
	poll("the deployment ready on the survivor", func() bool {
		st := status(other)
		return st != nil && st.Deployment != nil && st.Deployment.Phase == "ready"
	})
	b, _ := os.ReadFile(evidence)
	var starts []string
	runIDs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			runIDs[f[1]] = true
			if f[0] == "start" {
				starts = append(starts, f[1])
			}
		}
	}
	if len(starts) < 2 || len(runIDs) != 1 {
		t.Fatalf("hook evidence:\n%s\nwant the hook started twice (killed leader, then the new one) with one run id", b)
	}
	h, err := other.client.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	hooks := 0
	for _, ev := range h.Events {
		if ev.Action == "hook" && ev.Hook != nil && ev.Hook.Event == "on_deploy" {
			hooks++
		}
	}
	if hooks != 1 {
		t.Errorf("%d on_deploy outcomes in the history, want 1", hooks)
	}

	// Promote, then kill the new leader while the old pool is retained.
	if _, err := other.client.Promote(ctx); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if err := next.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	last := other
	if next == other {
		for _, g := range gws {
			if g != leader && g != next {
				last = g
			}
		}
	}
	poll("the last gateway retiring the old pool", func() bool {
		st := status(last)
		return st != nil && st.Deployment != nil && st.Deployment.Phase == "completed"
	})
	st := status(last)
	if st.Fleet.Leader != last.name {
		t.Errorf("leader %q after the second kill, want %s", st.Fleet.Leader, last.name)
	}
	d := st.Deployment
	if d.RetiredAt.Before(d.RetainUntil) {
		t.Errorf("retired at %s, before the retention end %s", d.RetiredAt, d.RetainUntil)
	}
	if b, _ := os.ReadFile(evidence); !strings.Contains(string(b), "retire ") {
		t.Errorf("on_retire did not run:\n%s", b)
	}
}
