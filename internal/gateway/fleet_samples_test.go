package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/validation"
)

// canaryFleet is n gateways with the canary strategy at one step of
// weight percent held for an hour, judged by the error-rate gate alone
// (at least minSamples) every 100 ms; it returns the fleet, its leader
// and the followers.
func canaryFleet(t *testing.T, n, weight, minSamples int) (*fleetEnv, *env, []*env) {
	t.Helper()
	f := newFleetWith(t, n, func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = nil
		c.Rollout.Strategy = config.StrategyCanary
		c.Rollout.Canary.Steps = []config.CanaryStep{{Weight: weight, Pause: config.Duration(time.Hour)}}
		v := &c.Validation
		v.Interval = config.Duration(100 * time.Millisecond)
		v.FailureLimit = 3
		onlyGate(c, validation.GateErrorRate)
		v.Gates.ErrorRate.MinSamples = minSamples
	})
	var leader *env
	var followers []*env
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
	return f, leader, followers
}

// fleetLoad sends chats through the given gateways only, until stopped.
type fleetLoad struct {
	stop atomic.Bool
	wg   sync.WaitGroup
}

func startFleetLoad(gws ...*env) *fleetLoad {
	l := &fleetLoad{}
	for i, e := range gws {
		for c := range 2 {
			l.wg.Go(func() {
				for n := 0; !l.stop.Load() && n < 20000; n++ {
					_, _ = e.chat(context.Background(), "", fmt.Sprintf("g%d-c%d-%d", i, c, n), n%2 == 0, "")
				}
			})
		}
	}
	return l
}

func (l *fleetLoad) end() {
	l.stop.Store(true)
	l.wg.Wait()
}

// TestFleetFollowerTrafficReachesLeadersGates: the leader serves no
// traffic at all; a canary failing half its requests on a follower's
// traffic is still failed by the leader's error-rate gate, which counts
// the follower's samples.
func TestFleetFollowerTrafficReachesLeadersGates(t *testing.T) {
	_, leader, followers := canaryFleet(t, 3, 50, 20)
	l := startFleetLoad(followers[0])
	defer l.end()
	deployV2(t, followers[0], mockllm.Config{Tokens: 4, ErrorRate: 0.5, Seed: 3})
	d := leader.waitPhase(t, "failed", 60*time.Second)
	l.end()
	if !strings.Contains(d.Reason, "gate error_rate") {
		t.Fatalf("failed for %q, want gate error_rate", d.Reason)
	}
	g := gate(d, validation.GateErrorRate)
	if g == nil || g.Verdict != "fail" || g.Samples < 20 {
		t.Fatalf("error_rate gate %+v: want a failure over the follower's samples", g)
	}
}

// TestFleetGatesCountContributingGatewaysAndForgetStoppedOnes: traffic
// through two followers makes status say two gateways contribute, on
// the leader and on a follower; once one of them stops, its figures go
// with its lease and status says one.
func TestFleetGatesCountContributingGatewaysAndForgetStoppedOnes(t *testing.T) {
	_, leader, followers := canaryFleet(t, 3, 50, 1_000_000) // never conclusive: the canary stays
	l := startFleetLoad(followers...)
	deployV2(t, followers[0], mockllm.Config{Tokens: 4, Seed: 3})
	ctx := context.Background()
	contributors := func(e *env) int {
		st, err := e.admin.Status(ctx)
		if err != nil || st.Deployment == nil || st.Deployment.Phase != "canary" {
			return -1
		}
		return st.Deployment.GatesFromGateways
	}
	waitFor(t, "two contributing gateways on the leader and a follower", 30*time.Second, func() bool {
		return contributors(leader) == 2 && contributors(followers[0]) == 2
	})
	// The leader serves nothing itself: what its gate counts is theirs.
	waitFor(t, "the leader's error_rate gate counting the followers' samples", 30*time.Second, func() bool {
		d := leader.gw.Controller().Status().Deployment
		g := gate(d, validation.GateErrorRate)
		return g != nil && g.Samples > 0
	})
	l.end()
	if err := followers[1].stop(); err != nil {
		t.Fatalf("stop %v", err)
	}
	waitFor(t, "one contributing gateway once the other stopped", 30*time.Second, func() bool {
		return contributors(leader) == 1
	})
}
