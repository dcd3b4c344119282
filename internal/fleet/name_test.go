package fleet

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/store"
)

type nopFollower struct{}

func (nopFollower) Follow(context.Context, store.Record) error { return nil }

// TestCheckNameRefusesANameHeldOnAnotherHost: a second gateway given the
// name of a running one (a config file copied to a second host) is
// refused; the same host (a restart within the session TTL) and another
// name are not.
func TestCheckNameRefusesANameHeldOnAnotherHost(t *testing.T) {
	srv := etcdtest.New(t)
	st := openStore(t, srv.Endpoint())
	m := New(Options{Store: st, Name: "gw-a", Admin: "10.0.0.1:8081", Host: "host-a", TTL: 2 * time.Second, Follower: nopFollower{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the member key", func() bool {
		return len(m.Status().Members) == 1
	})
	for _, tc := range []struct {
		name, host, admin string
		refused           bool
	}{
		{"gw-a", "host-b", "10.0.0.2:8081", true},
		{"gw-a", "host-a", "10.0.0.1:8081", false}, // a restart
		{"gw-a", "host-a", "", false},
		// A second gateway on the same host, from a copied file (a
		// regression: accepted, and the two ended each other's hooks).
		{"gw-a", "host-a", "10.0.0.1:8082", true},
		{"gw-b", "host-b", "10.0.0.2:8081", false},
	} {
		err := CheckName(context.Background(), st, tc.name, tc.host, tc.admin, nil)
		if (err != nil) != tc.refused {
			t.Errorf("CheckName(%s on %s, admin %s) = %v, want refused %v", tc.name, tc.host, tc.admin, err, tc.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), "host-a") || !strings.Contains(err.Error(), "10.0.0.1:8081")) {
			t.Errorf("refusal %q does not name the other gateway's host and admin", err)
		}
	}
	// A dead gateway's entry (its lease no longer renewed): the name is
	// free once the lease expires, so a restart under a new host name (a
	// new container) within the TTL waits instead of being refused.
	lease, err := st.Client().Grant(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(memberInfo{Name: "gw-dead", Admin: "10.0.0.9:8081", Host: "old-container"})
	if _, err := st.Client().Put(context.Background(), st.Prefix()+"members/gw-dead", string(b), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if err := CheckName(context.Background(), st, "gw-dead", "new-container", "10.0.0.9:8081", nil); err != nil {
		t.Errorf("the name of a dead gateway's entry, once its lease expired: %v", err)
	}
}

// TestOthersInFlight: each member publishes its requests in flight by
// pool, and OthersInFlight sums those of the other members (a regression:
// the leader's retirement drained only its own requests and cut the
// streams running through the other gateways).
func TestOthersInFlight(t *testing.T) {
	srv := etcdtest.New(t)
	st := openStore(t, srv.Endpoint())
	start := func(name string, inflight map[string]int) *Member {
		m := New(Options{Store: st, Name: name, Admin: "127.0.0.1:1", Host: "h", TTL: 2 * time.Second, Follower: nopFollower{},
			InFlight: func() map[string]int { return inflight }})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return m
	}
	a := start("gw-a", map[string]int{"blue": 3})
	b := start("gw-b", map[string]int{"blue": 1, "green": 4})
	waitUntil(t, "each member sees the other's requests", func() bool {
		return a.OthersInFlight("blue") == 1 && a.OthersInFlight("green") == 4 && b.OthersInFlight("blue") == 3
	})
	if n := b.OthersInFlight("green"); n != 0 {
		t.Errorf("gw-b counts its own requests among the others': %d", n)
	}
}
