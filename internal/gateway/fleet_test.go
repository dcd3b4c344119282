package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin/browsertest"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// fleetEnv is n gateways in this process sharing one embedded etcd and
// one set of simulated pools.
type fleetEnv struct {
	etcd *etcdtest.Server
	cfg  *config.Config // the first gateway's; others differ in name and state_dir
	gws  []*env
}

// newFleet starts a real etcd and n gateways on it.
func newFleet(t testing.TB, n int) *fleetEnv { return newFleetWith(t, n, nil) }

// newFleetWith is newFleet with edit applied to every gateway's config.
func newFleetWith(t testing.TB, n int, edit func(*config.Config)) *fleetEnv {
	t.Helper()
	srv := etcdtest.New(t)
	f := newFleetOn(t, n, []string{srv.Endpoint()}, edit)
	f.etcd = srv
	return f
}

// newFleetOn starts n gateways on the etcd endpoints.
func newFleetOn(t testing.TB, n int, endpoints []string, edit func(*config.Config)) *fleetEnv {
	t.Helper()
	f := &fleetEnv{}
	first := newEnv(t, envOptions{modelName: "llm", mock: mockllm.Config{Tokens: 4}, edit: func(c *config.Config) {
		if edit != nil {
			edit(c)
		}
		c.Name = "gw-0"
		c.Etcd = &config.Etcd{Endpoints: endpoints, Prefix: "/test/" + t.Name() + "/",
			DialTimeout: config.Duration(time.Second), SessionTTL: config.Duration(2 * time.Second)}
		f.cfg = c
	}})
	f.gws = append(f.gws, first)
	for i := 1; i < n; i++ {
		f.gws = append(f.gws, f.start(t, fmt.Sprintf("gw-%d", i), t.TempDir()))
	}
	return f
}

// start runs one more gateway of the fleet, named name, with its local
// copy in stateDir; opts are added to New's.
func (f *fleetEnv) start(t testing.TB, name, stateDir string, opts ...gateway.Option) *env {
	t.Helper()
	return f.startWith(t, name, stateDir, nil, opts...)
}

// startWith is start with edit applied to the gateway's copy of the
// config (its etcd block is its own copy too); opts are added to New's.
func (f *fleetEnv) startWith(t testing.TB, name, stateDir string, edit func(*config.Config), opts ...gateway.Option) *env {
	t.Helper()
	cfg := *f.cfg
	cfg.Name, cfg.StateDir = name, stateDir
	etcd := *cfg.Etcd
	cfg.Etcd = &etcd
	if edit != nil {
		edit(&cfg)
	}
	e := &env{t: t, pools: f.gws[0].pools, clock: &clock{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tWriter{t}, nil)).With("gw", name)
	}
	gw, err := gateway.New(context.Background(), &cfg, testToken, log, append([]gateway.Option{gateway.WithClock(e.clock.now)}, opts...)...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	var once sync.Once
	e.stop = func() error {
		var err error
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = e.stop() })
	e.gw = gw
	e.traffic = "http://" + gw.TrafficAddr()
	e.admin = &api.Client{BaseURL: "http://" + gw.AdminAddr(), Token: testToken, Actor: "test-" + name}
	e.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(e.http.CloseIdleConnections)
	return e
}

// servesPool reports whether a new request on e is answered by pool.
func servesPool(e *env, pool string) bool {
	res, err := e.chat(context.Background(), "", "hi", false, "")
	ok := err == nil && res.status == http.StatusOK && res.pool == pool
	if !ok {
		e.t.Logf("want %s, got %+v %v", pool, res, err)
	}
	return ok
}

func TestFleetPromoteOnOneGatewayReachesAll(t *testing.T) {
	f := newFleet(t, 3)
	ctx := context.Background()
	for i, e := range f.gws {
		if res, err := e.chat(ctx, "", "hi", false, ""); err != nil || res.pool != "blue" {
			t.Fatalf("gw-%d does not serve blue at start: %+v %v", i, res, err)
		}
	}
	res, err := f.gws[1].admin.Promote(ctx)
	if err != nil {
		t.Fatalf("promote on gw-1: %v", err)
	}
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gw-%d serving green", i), 10*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == res.Revision
		})
		if r, err := e.chat(ctx, "", "hi", false, ""); err != nil || r.pool != "green" {
			t.Errorf("gw-%d at revision %d does not serve green: %+v %v", i, res.Revision, r, err)
		}
	}
	// One leader, three members, every status says so.
	waitFor(t, "every member and one leader in status", 10*time.Second, func() bool {
		leaders := map[string]bool{}
		for _, e := range f.gws {
			st, err := e.admin.Status(ctx)
			if err != nil || st.Fleet == nil || len(st.Fleet.Members) != 3 || st.Fleet.Leader == "" || !st.Fleet.Store.Healthy || st.Fleet.Store.Kind != "etcd" {
				return false
			}
			leaders[st.Fleet.Leader] = true
		}
		return len(leaders) == 1
	})
	n := 0
	for _, e := range f.gws {
		if e.gw.Fleet().Leading() {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d gateways lead, want 1", n)
	}
	// History is the fleet's: the same on every gateway.
	h0, err := f.gws[0].admin.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := f.gws[2].admin.History(ctx, 0)
	if err != nil || len(h0.Events) != len(h2.Events) || len(h0.Events) != 2 || h0.Events[1].Action != "promote" {
		t.Fatalf("history gw-0 %+v, gw-2 %+v (%v): want init and promote on both", h0.Events, h2.Events, err)
	}
}

func TestFleetEtcdDownServesLastTableAndRefusesWrites(t *testing.T) {
	f := newFleet(t, 2)
	ctx := context.Background()
	res, err := f.gws[0].admin.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gw-%d at revision %d", i, res.Revision), 10*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == res.Revision && e.gw.Fleet().Applied() == res.Revision
		})
	}
	// Load runs through both gateways while etcd goes away.
	l := startDeterministicLoad(f.gws, 2)
	defer l.end()
	f.etcd.Stop()
	// Traffic goes on, on the last table, on every gateway.
	for i, e := range f.gws {
		for range 20 {
			r, err := e.chat(ctx, "", "hi", i%2 == 0, "")
			if err != nil || r.status != http.StatusOK || r.pool != "green" {
				t.Fatalf("gw-%d with etcd down: %+v %v", i, r, err)
			}
		}
	}
	// Writes are refused with 503 store_unavailable and change nothing.
	_, err = f.gws[1].admin.Rollback(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Code != "store_unavailable" {
		t.Fatalf("rollback with etcd down = %v, want 503 store_unavailable", err)
	}
	_, err = f.gws[0].admin.Promote(ctx)
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Code != "store_unavailable" {
		t.Fatalf("promote with etcd down = %v, want 503 store_unavailable", err)
	}
	waitFor(t, "status and metric saying the store is down", 10*time.Second, func() bool {
		st, err := f.gws[0].admin.Status(ctx)
		return err == nil && st.Fleet != nil && !st.Fleet.Store.Healthy && !st.Fleet.Store.Since.IsZero() &&
			strings.Contains(metricsText(t, f.gws[0]), "\ncutover_store_up 0\n")
	})
	// No gateway names a leader it cannot ask etcd about (a follower
	// went on naming the last one it read).
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gw-%d naming no leader", i), 10*time.Second, func() bool {
			st, err := e.admin.Status(ctx)
			return err == nil && st.Fleet != nil && st.Fleet.Leader == ""
		})
	}
	if !servesPool(f.gws[1], "green") {
		t.Fatal("a refused rollback changed the routing")
	}
	// A read says what it is: no change "not confirmed".
	if _, err := f.gws[1].admin.History(ctx, 0); !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable ||
		ae.Code != "store_unavailable" || !strings.Contains(ae.Message, "history is kept in etcd") || strings.Contains(ae.Message, "not confirmed") {
		t.Fatalf("history with etcd down = %v, want 503 store_unavailable saying the history cannot be read", err)
	}
	l.end()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d of %d client requests failed while etcd went down: %v", n, l.total.Load(), l.first.Load())
	}
	t.Logf("%d client requests while etcd went down, none failed", l.total.Load())
	// A gateway restarted while etcd is down serves its local copy.
	stateDir := f.cfg.StateDir
	if err := f.gws[0].stop(); err != nil {
		t.Fatalf("stop gw-0: %v", err)
	}
	re := f.start(t, "gw-0", stateDir)
	if !servesPool(re, "green") {
		t.Fatal("gw-0 restarted while etcd is down does not serve green from its local copy")
	}
	st, err := re.admin.Status(ctx)
	if err != nil || st.Live != "green" || st.Revision != res.Revision || st.Fleet == nil || !st.Fleet.Store.FromLocalCopy {
		t.Fatalf("restarted status %+v %v: want green at revision %d from the local copy", st, err, res.Revision)
	}
	// etcd back: the next switch reaches every gateway.
	if err := f.etcd.Restart(); err != nil {
		t.Fatal(err)
	}
	var back *api.SwitchResult
	waitFor(t, "a rollback accepted once etcd is back", 20*time.Second, func() bool {
		back, err = f.gws[1].admin.Rollback(ctx)
		return err == nil
	})
	for i, e := range []*env{re, f.gws[1]} {
		waitFor(t, fmt.Sprintf("gateway %d serving blue", i), 20*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == back.Revision && servesPool(e, "blue")
		})
	}
}

// TestFleetConcurrentSwitchesOneWinsPerRevision: in a fleet of three, two
// gateways receive a promote and a rollback at the same instant, several
// rounds in a row: exactly one wins each revision, the history has one line
// per revision, and every gateway (the third too) ends on the same pool.
func TestFleetConcurrentSwitchesOneWinsPerRevision(t *testing.T) {
	f := newFleet(t, 3)
	ctx := context.Background()
	a, b := f.gws[0], f.gws[1]
	first, err := a.admin.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	final, conflicts := first, 0
	for round := range 4 {
		for i, e := range f.gws {
			waitFor(t, fmt.Sprintf("round %d: gw-%d at revision %d", round, i, final.Revision), 10*time.Second, func() bool {
				return e.gw.Controller().Status().Revision == final.Revision
			})
		}
		// Both ask, at the same revision, to make the other pool live.
		var wg sync.WaitGroup
		var errA, errB error
		var resA, resB *api.SwitchResult
		start := make(chan struct{})
		wg.Go(func() { <-start; resA, errA = a.admin.Promote(ctx) })
		wg.Go(func() { <-start; resB, errB = b.admin.Rollback(ctx) })
		close(start)
		wg.Wait()
		// Exactly one wins each revision: when both calls decided on the
		// same revision, one gets 409; when one gateway had already
		// applied the other's switch before deciding (the watch is that
		// fast), both succeed, on consecutive revisions.
		loser409 := func(err error) {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
				t.Errorf("round %d: loser = %v, want 409", round, err)
			}
		}
		switch {
		case errA == nil && errB == nil:
			if resA.Revision == resB.Revision {
				t.Fatalf("round %d: promote and rollback both won revision %d", round, resA.Revision)
			}
			final = resA
			if resB.Revision > resA.Revision {
				final = resB
			}
		case errA == nil:
			final, conflicts = resA, conflicts+1
			loser409(errB)
		case errB == nil:
			final, conflicts = resB, conflicts+1
			loser409(errA)
		default:
			t.Fatalf("round %d: promote on gw-0: %v, rollback on gw-1: %v; want one to win", round, errA, errB)
		}
		for i, e := range f.gws {
			waitFor(t, fmt.Sprintf("round %d: gw-%d at revision %d", round, i, final.Revision), 10*time.Second, func() bool {
				return e.gw.Controller().Status().Revision == final.Revision && servesPool(e, final.Live)
			})
		}
	}
	t.Logf("4 rounds: %d decided at one revision (the loser got 409), %d one after the other", conflicts, 4-conflicts)
	h, err := f.gws[2].admin.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	for _, ev := range h.Events {
		seen[ev.Revision]++
	}
	for rev := int64(1); rev <= final.Revision; rev++ {
		if seen[rev] != 1 {
			t.Errorf("revision %d has %d history lines, want 1 (history %+v)", rev, seen[rev], h.Events)
		}
	}
}

// TestFleetLeaderRunsDeploymentsAndHandsOver: a deployment asked on a
// follower is carried by the leader (its hooks run once); when the leader
// stops, the other gateway takes over and retires the old pool on time.
func TestFleetLeaderRunsDeploymentsAndHandsOver(t *testing.T) {
	evidence := filepath.Join(t.TempDir(), "hooks.log")
	f := newFleetWith(t, 2, func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Health.Timeout = config.Duration(time.Second)
		c.Rollout.Retention = config.Duration(time.Hour)
		c.Rollout.DrainTimeout = config.Duration(10 * time.Second)
		c.Rollout.Warmup.Requests = []config.WarmupRequest{{Prompt: "warm", MaxTokens: 2}}
		c.Hooks = map[string][]config.Hook{"on_deploy": hookCmd(evidence), "on_retire": hookCmd(evidence)}
	})
	var spare []*replica
	for range 2 {
		spare = append(spare, startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, ""))
	}
	ctx := context.Background()
	var leader, follower *env
	waitFor(t, "a leader", 20*time.Second, func() bool {
		for i, e := range f.gws {
			if e.gw.Fleet().Leading() {
				leader, follower = e, f.gws[1-i]
				return true
			}
		}
		return false
	})
	if follower.gw.Fleet().Leading() {
		t.Fatal("both gateways lead")
	}
	if _, err := follower.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatalf("deploy on the follower: %v", err)
	}
	follower.waitPhase(t, "ready", 30*time.Second)
	if err := leader.stop(); err != nil {
		t.Fatalf("stop the leader: %v", err)
	}
	waitFor(t, "the other gateway leading", 20*time.Second, func() bool { return follower.gw.Fleet().Leading() })
	// The new leader learnt the candidate's replicas from the watch; its
	// own health checker must have seen them before a promote can pass.
	waitFor(t, "the new leader to see the candidate healthy", 20*time.Second, func() bool {
		st := follower.gw.Controller().Status()
		for _, p := range st.Pools {
			if p.Name != st.Live {
				for _, r := range p.Replicas {
					if !r.Healthy {
						return false
					}
				}
				return len(p.Replicas) > 0
			}
		}
		return false
	})
	if _, err := follower.admin.Promote(ctx); err != nil {
		t.Fatalf("promote on the new leader: %v", err)
	}
	follower.clock.advance(time.Hour) // the retention ends
	follower.waitPhase(t, "completed", 30*time.Second)
	lines := strings.Split(strings.TrimSpace(mustRead(t, evidence)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "on_deploy ") || !strings.HasPrefix(lines[1], "on_retire ") {
		t.Fatalf("hooks ran:\n%s\nwant on_deploy once, then on_retire once", strings.Join(lines, "\n"))
	}
}

// TestFleetSwitchesUnderLoadFailNothing: with streams and plain requests
// flowing through three gateways, a promote on one and a rollback on
// another fail and cut nothing, and no request that started a bound after
// the call returned is answered by the old pool.
func TestFleetSwitchesUnderLoadFailNothing(t *testing.T) {
	const bound = time.Second // generous for -race on a loaded machine; the benchmark measures the real figure
	f := newFleet(t, 3)
	ctx, stop := context.WithCancel(context.Background())
	type sample struct {
		start time.Time
		pool  string
	}
	var (
		mu      sync.Mutex
		samples []sample
		failed  []string
		wg      sync.WaitGroup
	)
	for gi, e := range f.gws {
		for c := range 3 {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					start := time.Now()
					res, err := e.chat(context.Background(), "", "load", (n+c)%2 == 0, "")
					mu.Lock()
					if err != nil || res.status != http.StatusOK {
						failed = append(failed, fmt.Sprintf("gw-%d: %+v %v", gi, res, err))
					} else {
						samples = append(samples, sample{start, res.pool})
					}
					mu.Unlock()
				}
			})
		}
	}
	switchAndCheck := func(what string, do func() (*api.SwitchResult, error)) {
		t.Helper()
		res, err := do()
		if err != nil {
			stop()
			wg.Wait()
			t.Fatalf("%s: %v", what, err)
		}
		returned := time.Now()
		for i, e := range f.gws {
			waitFor(t, fmt.Sprintf("gw-%d after %s", i, what), 10*time.Second, func() bool {
				return e.gw.Controller().Status().Revision >= res.Revision
			})
		}
		// Let requests that start after the bound complete, then check them.
		waitFor(t, "requests after the bound", 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, s := range samples {
				if s.start.After(returned.Add(bound)) {
					n++
				}
			}
			return n >= 30
		})
		mu.Lock()
		defer mu.Unlock()
		for _, s := range samples {
			if s.start.After(returned.Add(bound)) && s.pool != res.Live {
				t.Errorf("%s: a request started %s after the call returned was answered by %s", what, s.start.Sub(returned), s.pool)
			}
		}
		samples = samples[:0]
	}
	switchAndCheck("promote on gw-0", func() (*api.SwitchResult, error) { return f.gws[0].admin.Promote(context.Background()) })
	switchAndCheck("rollback on gw-2", func() (*api.SwitchResult, error) { return f.gws[2].admin.Rollback(context.Background()) })
	stop()
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d requests failed, first: %s", len(failed), failed[0])
	}
}

// TestFleetDashboardShowsLeaderMembersAndStore: the dashboard's top bar
// shows the fleet's leader, its members and the store, and says so when
// etcd becomes unreachable.
func TestFleetDashboardShowsLeaderMembersAndStore(t *testing.T) {
	browsertest.Require(t)
	f := newFleet(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browsertest.Start(ctx, t)
	b.Login("http://"+f.gws[1].gw.AdminAddr()+"/", testToken)
	b.WaitText(`[data-testid="fleet-members"]`, "2 gateways", false)
	b.WaitText(`[data-testid="fleet-leader"]`, "gw-", false)
	b.WaitText(`[data-testid="fleet-store"]`, "etcd reachable", false)
	f.etcd.Stop()
	b.WaitText(`[data-testid="fleet-store"]`, "etcd UNREACHABLE since", false)
}

// TestFleetThreeMemberEtcdQuorum: on a 3-member etcd cluster, switches go
// on with one member down; with two down (no quorum) every gateway serves
// its last table and writes answer 503; with quorum back the next switch
// reaches every gateway.
func TestFleetThreeMemberEtcdQuorum(t *testing.T) {
	members := etcdtest.NewCluster(t, 3)
	var eps []string
	for _, m := range members {
		eps = append(eps, m.Endpoint())
	}
	f := newFleetOn(t, 2, eps, nil)
	ctx := context.Background()
	members[0].Stop()
	var res *api.SwitchResult
	waitFor(t, "a promote accepted with one etcd member down", 20*time.Second, func() bool {
		var err error
		res, err = f.gws[0].admin.Promote(ctx)
		return err == nil
	})
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gw-%d on green", i), 20*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == res.Revision && servesPool(e, "green")
		})
	}
	members[1].Stop() // quorum lost
	// Wait until the gateways know, so that no write is sent: a write
	// sent to a member that has not yet noticed may be applied later.
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gw-%d seeing the store down", i), 20*time.Second, func() bool {
			st, err := e.admin.Status(ctx)
			return err == nil && st.Fleet != nil && !st.Fleet.Store.Healthy
		})
	}
	_, err := f.gws[1].admin.Rollback(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Code != "store_unavailable" {
		t.Fatalf("rollback without quorum = %v, want 503 store_unavailable", err)
	}
	for i, e := range f.gws {
		for range 10 {
			if r, err := e.chat(ctx, "", "hi", true, ""); err != nil || r.pool != "green" {
				t.Fatalf("gw-%d without quorum: %+v %v", i, r, err)
			}
		}
	}
	if err := members[1].Restart(); err != nil {
		t.Fatal(err)
	}
	var back *api.SwitchResult
	var lastErr error
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last rollback error: %v", lastErr)
		}
	})
	waitFor(t, "a rollback accepted with quorum back", 30*time.Second, func() bool {
		back, lastErr = f.gws[1].admin.Rollback(ctx)
		return lastErr == nil
	})
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gw-%d on blue", i), 20*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == back.Revision && servesPool(e, "blue")
		})
	}
}

// TestFleetFollowsWhileALongTransitionRuns: a gateway whose promote waits
// on a before_promote hook still applies what the others write (here an
// abort): the watch does not wait for its transition, whose write then
// loses on the revision. Regression: Follow took the transition lock.
func TestFleetFollowsWhileALongTransitionRuns(t *testing.T) {
	dir := t.TempDir()
	release, started := filepath.Join(dir, "release"), filepath.Join(dir, "started")
	f := newFleetWith(t, 2, func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Health.Timeout = config.Duration(time.Second)
		c.Rollout.Warmup.Requests = []config.WarmupRequest{{Prompt: "warm", MaxTokens: 2}}
		c.Hooks = map[string][]config.Hook{"before_promote": {{Command: []string{"sh", "-c",
			fmt.Sprintf("touch %s; n=0; while [ ! -f %s ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done", started, release)}, Timeout: config.Duration(time.Minute)}}}
	})
	spare := []*replica{startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")}
	ctx := context.Background()
	a, b := f.gws[0], f.gws[1]
	if _, err := b.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatal(err)
	}
	a.waitPhase(t, "ready", 30*time.Second)
	promoted := make(chan error, 1)
	go func() { _, err := a.admin.Promote(ctx); promoted <- err }()
	waitFor(t, "the before_promote hook running on gw-0", 10*time.Second, func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	var d *api.Deployment
	var err error
	waitFor(t, "an abort accepted on gw-1 while gw-0's promote waits on its hook", 10*time.Second, func() bool {
		d, err = b.admin.Abort(ctx) // a conflict (gw-1 a write behind) reloads: try again
		return err == nil
	})
	waitFor(t, "gw-0 applying the abort while its hook still runs", 10*time.Second, func() bool {
		st := a.gw.Controller().Status()
		return st.Deployment != nil && st.Deployment.Phase == d.Phase && len(promoted) == 0
	})
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var ae *api.Error
	if err := <-promoted; !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
		t.Fatalf("the promote that waited = %v, want 409 (the state moved on)", err)
	}
	if !servesPool(a, "blue") || !servesPool(b, "blue") {
		t.Fatal("blue is not live on both after the aborted deployment")
	}
}

// TestFleetRestartedFollowerLeavesTheLeadersHookAlone: a follower that
// restarts on the leader's machine does not end the hook the leader runs
// (Start ends only its own leftovers). Regression: it ended every hook
// recorded as running.
func TestFleetRestartedFollowerLeavesTheLeadersHookAlone(t *testing.T) {
	dir := t.TempDir()
	release, evidence := filepath.Join(dir, "release"), filepath.Join(dir, "hooks.log")
	f := newFleetWith(t, 2, func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Health.Timeout = config.Duration(time.Second)
		c.Rollout.Warmup.Requests = []config.WarmupRequest{{Prompt: "warm", MaxTokens: 2}}
		c.Hooks = map[string][]config.Hook{"on_deploy": {{Command: []string{"sh", "-c",
			fmt.Sprintf("echo start >> %[1]s; n=0; while [ ! -f %[2]s ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; echo done >> %[1]s", evidence, release)},
			Timeout: config.Duration(time.Minute)}}}
	})
	spare := []*replica{startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")}
	ctx := context.Background()
	var follower int
	waitFor(t, "a leader", 20*time.Second, func() bool {
		for i, e := range f.gws {
			if e.gw.Fleet().Leading() {
				follower = 1 - i
				return true
			}
		}
		return false
	})
	if _, err := f.gws[follower].admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hook started", 20*time.Second, func() bool {
		b, _ := os.ReadFile(evidence)
		return strings.Contains(string(b), "start")
	})
	waitFor(t, "the follower holding the leader's record of the running hook", 20*time.Second, func() bool {
		want := f.gws[1-follower].gw.Controller().Status().Revision
		return f.gws[follower].gw.Controller().Status().Revision >= want && want >= 3
	})
	name := fmt.Sprintf("gw-%d", follower)
	stateDir := f.cfg.StateDir
	if follower != 0 {
		stateDir = t.TempDir()
	}
	if err := f.gws[follower].stop(); err != nil {
		t.Fatal(err)
	}
	f.start(t, name, stateDir)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the leader's hook finishing", 20*time.Second, func() bool {
		b, _ := os.ReadFile(evidence)
		return strings.Contains(string(b), "done")
	})
	h, err := f.gws[1-follower].admin.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range h.Events {
		if ev.Action == "hook_leftover" {
			t.Errorf("the restarted follower ended the leader's hook: %+v", ev)
		}
	}
}

// TestFleetGatewaysStartingTogetherAgree: gateways that start at the same
// moment on an empty prefix race to write the first state; one writes it
// and the others take it.
func TestFleetGatewaysStartingTogetherAgree(t *testing.T) {
	f := newFleet(t, 1)
	etcdCfg := *f.cfg.Etcd
	etcdCfg.Prefix = "/test/" + t.Name() + "-together/"
	var wg sync.WaitGroup
	gws := make([]*gateway.Gateway, 3)
	errs := make([]error, 3)
	for i := range gws {
		cfg := *f.cfg
		cfg.Name, cfg.StateDir, cfg.Etcd = fmt.Sprintf("together-%d", i), t.TempDir(), &etcdCfg
		wg.Go(func() {
			gws[i], errs[i] = gateway.New(context.Background(), &cfg, testToken, slog.New(slog.NewTextHandler(io.Discard, nil)))
		})
	}
	wg.Wait()
	for i, gw := range gws {
		if errs[i] != nil {
			t.Fatalf("gateway %d: %v", i, errs[i])
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- gw.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if st := gw.Controller().Status(); st.Revision != 1 || st.Live != "blue" {
			t.Errorf("gateway %d at revision %d live %s, want 1 and blue", i, st.Revision, st.Live)
		}
	}
}

// metricsText is the gateway's /metrics page.
func metricsText(t testing.TB, e *env) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.gw.AdminAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestFleetFollowerChecksNewReplicasAtOnce: a gateway that learns a
// deployment's replicas from the watch checks them at once, not at its
// next round of checks (a regression: with a long health interval a promote
// sent to it was refused "not checked yet" long after the leader saw them
// healthy).
func TestFleetFollowerChecksNewReplicasAtOnce(t *testing.T) {
	f := newFleetWith(t, 2, func(c *config.Config) {
		c.Health.Interval = config.Duration(time.Hour) // no round of checks during the test
	})
	spare := []*replica{
		startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, ""),
		startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, ""),
	}
	if _, err := f.gws[0].admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v3", Replicas: urls(spare)}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	for i, e := range f.gws {
		waitFor(t, fmt.Sprintf("gateway %d to see the new replicas healthy", i), 20*time.Second, func() bool {
			st := e.gw.Controller().Status()
			p, ok := st.Pools["green"]
			if !ok || p.Model != "model-v3" || len(p.Replicas) != 2 {
				return false
			}
			for _, r := range p.Replicas {
				if !r.Healthy {
					return false
				}
			}
			return true
		})
	}
}
