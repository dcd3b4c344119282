package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/validation"
)

// linkedFleet starts a real etcd and n gateways, each reaching it through
// its own link (links[i] is f.gws[i]'s), so that a test can cut one off.
func linkedFleet(t *testing.T, n int, edit func(*config.Config)) (*fleetEnv, []*link) {
	t.Helper()
	srv := etcdtest.New(t)
	target := strings.TrimPrefix(srv.Endpoint(), "http://")
	links := make([]*link, n)
	for i := range links {
		links[i] = newLink(t, target)
	}
	f := newFleetOn(t, 1, []string{links[0].Endpoint()}, edit)
	f.etcd = srv
	for i := 1; i < n; i++ {
		f.gws = append(f.gws, f.startWith(t, fmt.Sprintf("gw-%d", i), t.TempDir(), func(c *config.Config) {
			c.Etcd.Endpoints = []string{links[i].Endpoint()}
		}))
	}
	return f, links
}

// leaderOf waits for one gateway of f to lead and returns it and the
// others.
func leaderOf(t *testing.T, f *fleetEnv) (leader *env, followers []*env) {
	t.Helper()
	waitFor(t, "a leader", 20*time.Second, func() bool {
		leader, followers = nil, nil
		for _, e := range f.gws {
			if e.gw.Fleet().Leading() {
				leader = e
			} else {
				followers = append(followers, e)
			}
		}
		return leader != nil
	})
	return leader, followers
}

// shadowValidation validates blue-green with shadow copies of every live
// request, judged by the shadow mismatch gate alone (at least minPairs
// pairs) every 100 ms, with no deadline a test could reach.
func shadowValidation(minPairs int) func(*config.Config) {
	return func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = nil
		v := &c.Validation
		v.Shadow.Percent = 100
		v.Interval = config.Duration(100 * time.Millisecond)
		v.Deadline = config.Duration(time.Hour)
		v.FailureLimit = 3
		onlyGate(c, validation.GateShadowMismatch)
		v.Gates.ShadowMismatch.MinSamples = minPairs
	}
}

// startDeterministicLoad sends temperature-0 chats (half streamed) from
// clients goroutines per gateway, through the given gateways only, until
// end; it counts failures.
func startDeterministicLoad(gws []*env, clients int) *load {
	l := &load{}
	for g, e := range gws {
		for i := range clients {
			l.wg.Go(func() {
				for n := 0; !l.stop.Load() && n < 20000; n++ {
					res, err := e.chat(context.Background(), "llm", fmt.Sprintf("g%d-q%d-%d", g, i, n%50), n%2 == 0, `,"temperature":0`)
					l.total.Add(1)
					if err != nil || res.status != http.StatusOK {
						l.failed.Add(1)
						l.first.CompareAndSwap(nil, fmt.Sprintf("%d %v %s", res.status, err, res.body))
					}
				}
			})
		}
	}
	return l
}

// TestFleetFollowerShadowCopiesReachLeadersGate: client traffic goes
// through one follower only. That follower mirrors it to the candidate,
// and the leader, which mirrors nothing itself, fails a version that
// answers different text by the shadow mismatch gate over the follower's
// pairs. (Before, only the leader mirrored: the gate never had a pair.)
func TestFleetFollowerShadowCopiesReachLeadersGate(t *testing.T) {
	f := newFleetWith(t, 3, shadowValidation(20))
	leader, followers := leaderOf(t, f)
	l := startDeterministicLoad(followers[:1], 4)
	defer l.end()
	deployV2(t, followers[0], mockllm.Config{Tokens: 4}) // answers as model-v2b: every judged pair differs
	d := leader.waitPhase(t, "failed", 60*time.Second)
	l.end()
	if !strings.Contains(d.Reason, "gate shadow_mismatch_rate") {
		t.Fatalf("failed for %q, want gate shadow_mismatch_rate", d.Reason)
	}
	if g := gate(d, validation.GateShadowMismatch); g == nil || g.Verdict != validation.Fail || g.Samples < 20 {
		t.Fatalf("shadow gate %+v: want a failure over at least 20 of the follower's pairs", g)
	}
	if s := leader.gw.Mirror().Stats(); s.Sent != 0 {
		t.Errorf("the leader, which served nothing, sent %d shadow copies", s.Sent)
	}
	if s := followers[0].gw.Mirror().Stats(); s.Sent == 0 {
		t.Errorf("the follower sent no shadow copies: %+v", s)
	}
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d of %d client requests failed: %v", n, l.total.Load(), l.first.Load())
	}
}

// TestFleetShadowCountsGatewaysAndACutOffFollowerExpires: both followers
// mirror their traffic; status on the leader and on a follower says two
// gateways' shadow copies count. One follower is then cut off from etcd
// (it cannot revoke anything, like a dead process): its figures go when
// its lease expires, and status says one.
func TestFleetShadowCountsGatewaysAndACutOffFollowerExpires(t *testing.T) {
	f, links := linkedFleet(t, 3, shadowValidation(1_000_000)) // never conclusive: validation goes on
	leader, followers := leaderOf(t, f)
	l := startDeterministicLoad(followers, 2)
	defer l.end()
	deployV2(t, followers[0], mockllm.Config{Tokens: 4, AnswerAs: "model-v1"})
	ctx := context.Background()
	shadowFrom := func(e *env) int {
		st, err := e.admin.Status(ctx)
		if err != nil || st.Deployment == nil || st.Deployment.Phase != "validating" {
			return -1
		}
		return st.Deployment.ShadowFromGateways
	}
	waitFor(t, "two gateways' shadow copies counted on the leader and a follower", 30*time.Second, func() bool {
		return shadowFrom(leader) == 2 && shadowFrom(followers[0]) == 2
	})
	waitFor(t, "the leader's shadow gate counting the followers' pairs", 30*time.Second, func() bool {
		g := gate(leader.gw.Controller().Status().Deployment, validation.GateShadowMismatch)
		return g != nil && g.Samples > 0
	})
	if s := leader.gw.Mirror().Stats(); s.Sent != 0 {
		t.Errorf("the leader, which served nothing, sent %d shadow copies", s.Sent)
	}
	l.end()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d of %d client requests failed: %v", n, l.total.Load(), l.first.Load())
	}
	dead := followers[1]
	links[slices.Index(f.gws, dead)].Cut()
	cut := time.Now()
	waitFor(t, "one gateway's shadow copies once the cut-off follower's lease expired", 30*time.Second, func() bool {
		return shadowFrom(leader) == 1
	})
	t.Logf("the cut-off follower's shadow figures left the leader's count %s after the cut (session_ttl 2s)", time.Since(cut).Round(10*time.Millisecond))
}

// TestFleetPartitionedGatewayServesLastTableAndStepsDown: the leader is
// cut off from etcd under load. It serves its last routing table (no
// client request fails), refuses admin writes with 503 store_unavailable,
// stops leading once its lease is gone while a connected gateway takes
// over; a switch made meanwhile reaches the others only. When the link
// returns it catches up from the watch, and its writes work again.
func TestFleetPartitionedGatewayServesLastTableAndStepsDown(t *testing.T) {
	f, links := linkedFleet(t, 3, nil)
	ctx := context.Background()
	cutGw, others := leaderOf(t, f)
	name := func(e *env) string { return fmt.Sprintf("gw-%d", slices.Index(f.gws, e)) }
	res, err := others[0].admin.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.gws {
		waitFor(t, name(e)+" at the promote's revision", 10*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == res.Revision
		})
	}
	l := startDeterministicLoad(f.gws, 2)
	defer l.end()

	links[slices.Index(f.gws, cutGw)].Cut()
	cut := time.Now()
	var next *env
	var stepDown time.Duration
	twoLeaders := false
	waitFor(t, "a connected gateway leading", 30*time.Second, func() bool {
		if stepDown == 0 && !cutGw.gw.Fleet().Leading() {
			stepDown = time.Since(cut)
		}
		for _, e := range others {
			if e.gw.Fleet().Leading() {
				next = e
			}
		}
		twoLeaders = next != nil && cutGw.gw.Fleet().Leading()
		return next != nil
	})
	takeover := time.Since(cut)
	// The cut-off leader stops once etcd has not confirmed its lease for
	// 3/4 of the TTL, so before etcd expires it and elects another.
	if twoLeaders {
		t.Errorf("%s leads while the cut-off %s still does", name(next), name(cutGw))
	}
	t.Logf("cut off the leader %s: it stepped down after %s, %s leads after %s (session_ttl 2s)",
		name(cutGw), stepDown.Round(10*time.Millisecond), name(next), takeover.Round(10*time.Millisecond))
	waitFor(t, "the cut-off gateway's status saying the store is down and it does not lead", 30*time.Second, func() bool {
		st, err := cutGw.admin.Status(ctx)
		return err == nil && st.Fleet != nil && !st.Fleet.Store.Healthy && st.Fleet.Leader != name(cutGw) &&
			strings.Contains(metricsText(t, cutGw), "\ncutover_fleet_leader 0\n")
	})
	_, err = cutGw.admin.Rollback(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Code != "store_unavailable" {
		t.Fatalf("rollback on the cut-off gateway = %v, want 503 store_unavailable", err)
	}
	// The connected gateways switch back; the cut-off one keeps its table.
	back, err := next.admin.Rollback(ctx)
	if err != nil {
		t.Fatalf("rollback on the new leader: %v", err)
	}
	for _, e := range others {
		waitFor(t, name(e)+" serving blue", 10*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == back.Revision && servesPool(e, "blue")
		})
	}
	if !servesPool(cutGw, "green") || cutGw.gw.Controller().Status().Revision != res.Revision {
		t.Fatalf("the cut-off gateway left its last table (revision %d)", cutGw.gw.Controller().Status().Revision)
	}
	links[slices.Index(f.gws, cutGw)].Restore()
	restored := time.Now()
	waitFor(t, "the reconnected gateway catching up", 60*time.Second, func() bool {
		return cutGw.gw.Controller().Status().Revision == back.Revision && cutGw.gw.Fleet().Applied() == back.Revision
	})
	t.Logf("%s caught up %s after the link returned", name(cutGw), time.Since(restored).Round(10*time.Millisecond))
	if !servesPool(cutGw, "blue") {
		t.Fatal("the reconnected gateway does not serve blue")
	}
	var again *api.SwitchResult
	waitFor(t, "a promote accepted on the reconnected gateway", 30*time.Second, func() bool {
		again, err = cutGw.admin.Promote(ctx)
		return err == nil
	})
	for _, e := range f.gws {
		waitFor(t, name(e)+" at the reconnected gateway's promote", 10*time.Second, func() bool {
			return e.gw.Controller().Status().Revision == again.Revision
		})
	}
	l.end()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d of %d client requests failed: %v", n, l.total.Load(), l.first.Load())
	}
	t.Logf("%d client requests through the three gateways, none failed", l.total.Load())
	leaders := 0
	for _, e := range f.gws {
		if e.gw.Fleet().Leading() {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d gateways lead after the partition healed, want 1", leaders)
	}
}
