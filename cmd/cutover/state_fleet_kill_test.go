package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// fleetGW is one `cutover serve` process of a fleet.
type fleetGW struct {
	name   string
	p      *proc
	client *api.Client
}

// startFleetGateways starts gw-a, gw-b and gw-c on the same pools, each
// with extra(name) appended to its config, and waits for their admin APIs.
func startFleetGateways(t *testing.T, blue, green []string, extra func(name string) string) []*fleetGW {
	t.Helper()
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	var gws []*fleetGW
	for _, name := range []string{"gw-a", "gw-b", "gw-c"} {
		c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(), blue: blue, green: green, extra: extra(name)}
		g := &fleetGW{name: name, client: &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}}
		g.p = start(t, env, "serve", "--config", c.write(t))
		waitAdmin(t, g.p, g.client)
		gws = append(gws, g)
	}
	return gws
}

// status is g's status, nil while it does not answer.
func (g *fleetGW) status() *api.Status {
	st, err := g.client.Status(context.Background())
	if err != nil {
		return nil
	}
	return st
}

// pollFleet waits up to 30 s for cond.
func pollFleet(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 600 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// fleetLeader waits until asking answers with a leader among gws and
// returns it; with a dead gateway, ask a live one.
func fleetLeader(t *testing.T, ask *fleetGW, gws []*fleetGW, members int, not *fleetGW) *fleetGW {
	t.Helper()
	var leader *fleetGW
	pollFleet(t, "a leader", func() bool {
		st := ask.status()
		if st == nil || st.Fleet == nil || len(st.Fleet.Members) < members {
			return false
		}
		for _, g := range gws {
			if g.name == st.Fleet.Leader && g != not {
				leader = g
			}
		}
		return leader != nil
	})
	return leader
}

// otherThan is the first of gws that is none of not.
func otherThan(gws []*fleetGW, not ...*fleetGW) *fleetGW {
	for _, g := range gws {
		if !slices.Contains(not, g) {
			return g
		}
	}
	return nil
}

// hookOutcomes counts the history's hook outcomes per event.
func hookOutcomes(t *testing.T, g *fleetGW) map[string]int {
	t.Helper()
	h, err := g.client.History(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ev := range h.Events {
		if ev.Action == "hook" && ev.Hook != nil {
			n[ev.Hook.Event]++
		}
	}
	return n
}

// kill9 kills g with SIGKILL and returns when.
func (g *fleetGW) kill9(t *testing.T) time.Time {
	t.Helper()
	if err := g.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

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
	gws := startFleetGateways(t, blue, green, func(name string) string {
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
	})
	ctx := context.Background()
	leader := fleetLeader(t, gws[0], gws, 3, nil)
	other := otherThan(gws, leader)
	if _, err := other.client.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: spare}); err != nil {
		t.Fatalf("deploy on the follower: %v", err)
	}
	pollFleet(t, "the leader starting the on_deploy hook", func() bool {
		b, _ := os.ReadFile(evidence)
		return strings.Contains(string(b), "start ")
	})
	killed := leader.kill9(t)
	next := fleetLeader(t, other, gws, 0, leader)
	t.Logf("takeover %s after kill -9 (session_ttl 2s)", time.Since(killed).Round(10*time.Millisecond))
	pollFleet(t, "the deployment ready on the survivor", func() bool {
		st := other.status()
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
	if n := hookOutcomes(t, other)["on_deploy"]; n != 1 {
		t.Errorf("%d on_deploy outcomes in the history, want 1", n)
	}

	// Promote, then kill the new leader while the old pool is retained.
	if _, err := other.client.Promote(ctx); err != nil {
		t.Fatalf("promote: %v", err)
	}
	next.kill9(t)
	last := otherThan(gws, leader, next)
	pollFleet(t, "the last gateway retiring the old pool", func() bool {
		st := last.status()
		return st != nil && st.Deployment != nil && st.Deployment.Phase == "completed"
	})
	st := last.status()
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

// TestFleetKill9LeaderMidWarmupHandsOver: the leader is killed with
// SIGKILL while its warm-up request to the new replica is in flight (the
// replica holds it until the leader's connection dies). Another gateway
// takes over, warms the replica up again and finishes the deployment on
// its own (auto-promotion, retention, retirement); every hook ran once:
// on_deploy (before the kill), on_promote and on_retire (after it).
func TestFleetKill9LeaderMidWarmupHandsOver(t *testing.T) {
	srv := etcdtest.New(t)
	evidence := filepath.Join(t.TempDir(), "hooks.log")
	blue, green := mockPool(t, "model-v1", 1), mockPool(t, "model-v2", 1)
	m, err := mockllm.New(mockllm.Config{Model: "model-v3", Tokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})  // closed when the first warm-up request arrives
	ended := make(chan struct{}) // closed when the test ends
	var warmups atomic.Int32
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" && warmups.Add(1) == 1 {
			_, _ = io.Copy(io.Discard, r.Body) // read whole, so the server notices the client going
			close(held)
			select {
			case <-r.Context().Done(): // the leader that sent it was killed
			case <-ended:
			}
			return
		}
		m.ServeHTTP(w, r)
	}))
	t.Cleanup(replica.Close)
	t.Cleanup(func() { close(ended) })
	hook := func(event string) string {
		return fmt.Sprintf("    - command: [sh, -c, 'echo %s $CUTOVER_HOOK_RUN_ID >> %s']\n", event, evidence)
	}
	gws := startFleetGateways(t, blue, green, func(name string) string {
		return fmt.Sprintf(`name: %s
etcd:
  endpoints: [%s]
  prefix: /kill9warm/
  dial_timeout: 1s
  session_ttl: 2s
rollout:
  auto_promote: true
  retention: 2s
  warmup:
    requests:
      - prompt: warm up
        max_tokens: 4
hooks:
  on_deploy:
%s  on_promote:
%s  on_retire:
%s`, name, srv.Endpoint(), hook("deploy"), hook("promote"), hook("retire"))
	})
	ctx := context.Background()
	leader := fleetLeader(t, gws[0], gws, 3, nil)
	other := otherThan(gws, leader)
	if _, err := other.client.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{replica.URL}}); err != nil {
		t.Fatalf("deploy on the follower: %v", err)
	}
	pollFleet(t, "the leader's warm-up request held by the replica, on_deploy done", func() bool {
		select {
		case <-held:
		default:
			return false
		}
		st := other.status()
		return st != nil && st.Deployment != nil && st.Deployment.Phase == "warming" && hookOutcomes(t, other)["on_deploy"] == 1
	})
	killed := leader.kill9(t)
	next := fleetLeader(t, other, gws, 0, leader)
	t.Logf("takeover by %s %s after kill -9 mid-warm-up (session_ttl 2s)", next.name, time.Since(killed).Round(10*time.Millisecond))
	var d *api.Deployment
	pollFleet(t, "the survivors finishing the deployment", func() bool {
		st := other.status()
		if st == nil || st.Deployment == nil {
			return false
		}
		d = st.Deployment
		return d.Phase == "completed" || d.Phase == "failed"
	})
	t.Logf("deployment %s %s after the kill", d.Phase, time.Since(killed).Round(10*time.Millisecond))
	if d.Phase != "completed" || d.PromotedAt.IsZero() || d.RetiredAt.Before(d.RetainUntil) {
		t.Fatalf("deployment %+v: want promoted, then retired at the retention's end", d)
	}
	if n := warmups.Load(); n < 2 {
		t.Errorf("%d warm-up requests reached the replica, want the killed leader's and the new leader's", n)
	}
	b, _ := os.ReadFile(evidence)
	lines := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			lines[f[0]]++
		}
	}
	for _, ev := range []string{"deploy", "promote", "retire"} {
		if lines[ev] != 1 {
			t.Errorf("on_%s ran %d times, want once:\n%s", ev, lines[ev], b)
		}
	}
	if n := hookOutcomes(t, other); n["on_deploy"] != 1 || n["on_promote"] != 1 || n["on_retire"] != 1 {
		t.Errorf("hook outcomes in the history %v, want one each of on_deploy, on_promote, on_retire", n)
	}
}
