package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/store"
	"github.com/cutover-dev/cutover/internal/validation"
)

func openStore(t *testing.T, endpoint string) *store.Etcd {
	t.Helper()
	st, err := store.OpenEtcd(store.EtcdOptions{Endpoints: []string{endpoint}, Prefix: "/test/" + t.Name() + "/", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestSamplesMergeOtherGatewaysAndExpireWithTheLease: two gateways publish
// their samples of one window; each reads the other's (and counts both).
// One that stops ticking without revoking (a dead process) drops out once
// its lease expires.
func TestSamplesMergeOtherGatewaysAndExpireWithTheLease(t *testing.T) {
	srv := etcdtest.New(t)
	win := validation.Window{Key: "d-1/pre", Live: "blue", Candidate: "green"}
	mk := func(name string) (*Samples, *validation.Recorder) {
		rec := &validation.Recorder{}
		s := NewSamples(SamplesOptions{Store: openStore(t, srv.Endpoint()), Name: name, TTL: time.Second,
			Window: func() validation.Window { return win }, Recorder: rec})
		return s, rec
	}
	a, recA := mk("gw-a")
	b, recB := mk("gw-b")
	ctx := context.Background()
	// Both tick once to set their windows, then record traffic.
	leaseA, err := a.tick(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.tick(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		recA.Observe(&proxy.Observation{Pool: "green", Duration: time.Millisecond})
	}
	recB.Observe(&proxy.Observation{Pool: "green", Status: 500, Duration: time.Millisecond})
	recB.Observe(&proxy.Observation{Pool: "blue", Duration: time.Millisecond})
	if leaseA, err = a.tick(ctx, leaseA); err != nil {
		t.Fatal(err)
	}
	if _, err := b.tick(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.tick(ctx, leaseA); err != nil {
		t.Fatal(err)
	}
	rem := b.Remote(time.Time{})
	if len(rem) != 1 || len(rem[0].Candidate) != 3 || len(rem[0].Live) != 0 {
		t.Fatalf("gw-b reads %+v, want gw-a's 3 candidate samples", rem)
	}
	rem = a.Remote(time.Time{})
	if len(rem) != 1 || len(rem[0].Candidate) != 1 || rem[0].Candidate[0][0] != 1 || len(rem[0].Live) != 1 {
		t.Fatalf("gw-a reads %+v, want gw-b's failed candidate sample and one live sample", rem)
	}
	if r := a.Remote(time.Now()); r != nil {
		t.Fatalf("samples read before the window began: %+v, want none", r)
	}
	if n := a.Contributors("d-1"); n != 2 {
		t.Fatalf("contributors %d, want 2", n)
	}
	if n := a.Contributors("d-2"); n != 0 {
		t.Fatalf("contributors of another deployment %d, want 0", n)
	}
	// gw-b dies: no more ticks, no revocation. Its figures expire.
	waitUntil(t, "gw-b's samples to expire with its lease", func() bool {
		var err error
		leaseA, err = a.tick(ctx, leaseA)
		return err == nil && len(a.Remote(time.Time{})) == 0 && a.Contributors("d-1") == 1
	})
}
