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
)

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
