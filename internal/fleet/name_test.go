package fleet

import (
	"context"
	"strings"
	"testing"

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
	m := New(Options{Store: st, Name: "gw-a", Admin: "10.0.0.1:8081", Host: "host-a", Follower: nopFollower{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the member key", func() bool {
		return len(m.Status().Members) == 1
	})
	for _, tc := range []struct {
		name, host string
		refused    bool
	}{
		{"gw-a", "host-b", true},
		{"gw-a", "host-a", false},
		{"gw-b", "host-b", false},
	} {
		err := CheckName(context.Background(), st, tc.name, tc.host)
		if (err != nil) != tc.refused {
			t.Errorf("CheckName(%s on %s) = %v, want refused %v", tc.name, tc.host, err, tc.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), "host-a") || !strings.Contains(err.Error(), "10.0.0.1:8081")) {
			t.Errorf("refusal %q does not name the other gateway's host and admin", err)
		}
	}
}
