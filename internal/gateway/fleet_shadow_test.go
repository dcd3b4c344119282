package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/validation"
)

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
