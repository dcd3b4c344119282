package gateway_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/store"
)

// TestFleetEtcdLosesItsData: etcd comes back empty (lost its data, or
// restored from an old snapshot: its revision starts over). Running
// gateways keep their routing, say why the store's state cannot be
// followed, and refuse changes with 503 state_unusable rather than an
// endless 409 conflict; a restarted gateway refuses to start from the
// older state instead of serving the first start's pool. Writing the
// local copy over it (state import --replace) puts the fleet back together.
func TestFleetEtcdLosesItsData(t *testing.T) {
	f := newFleet(t, 2)
	ctx := context.Background()
	res, err := f.gws[0].admin.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.gws {
		waitFor(t, "gateway at the promote's revision", 10*time.Second, func() bool {
			return e.gw.Fleet().Applied() == res.Revision
		})
	}
	if err := f.etcd.Wipe(); err != nil {
		t.Fatal(err)
	}
	for _, e := range f.gws {
		waitFor(t, "status naming the store's problem", 20*time.Second, func() bool {
			st, err := e.admin.Status(ctx)
			return err == nil && st.Fleet != nil && strings.Contains(st.Fleet.Store.Problem, "older than revision")
		})
		if !servesPool(e, "green") {
			t.Fatal("a gateway stopped serving green when etcd lost its data")
		}
	}
	_, err = f.gws[1].admin.Rollback(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Code != "state_unusable" || !strings.Contains(ae.Message, "state import --replace") {
		t.Fatalf("rollback on a wiped etcd = %v, want 503 state_unusable naming the way out", err)
	}

	// A restart refuses the older state.
	if err := f.gws[0].stop(); err != nil {
		t.Fatal(err)
	}
	cfg := *f.cfg
	_, err = gateway.New(ctx, &cfg, testToken, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, store.ErrBehind) || !strings.Contains(err.Error(), store.LocalFile) {
		t.Fatalf("start on a wiped etcd: %v, want store.ErrBehind naming the local copy", err)
	}

	// The way out: write gw-0's local copy over it.
	st, err := gateway.OpenStore(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	et := st.(*store.Etcd)
	loc, err := et.LoadLocal()
	if err != nil || loc.Revision != res.Revision {
		t.Fatalf("local copy: revision %d, %v; want %d", loc.Revision, err, res.Revision)
	}
	rev, err := et.Replace(ctx, loc, nil)
	_ = st.Close()
	if err != nil || rev <= res.Revision { // past what every gateway applied: news to each
		t.Fatalf("replace: revision %d, %v; want past %d", rev, err, res.Revision)
	}
	waitFor(t, "gw-1 following again", 20*time.Second, func() bool {
		st, err := f.gws[1].admin.Status(ctx)
		return err == nil && st.Fleet != nil && st.Fleet.Store.Problem == ""
	})
	back, err := f.gws[1].admin.Rollback(ctx)
	if err != nil {
		t.Fatalf("rollback after the replace: %v", err)
	}
	re := f.start(t, "gw-0", cfg.StateDir)
	waitFor(t, "restarted gw-0 serving blue", 20*time.Second, func() bool {
		return re.gw.Controller().Status().Revision == back.Revision && servesPool(re, "blue")
	})
}

// TestFleetDamagedStateInEtcd: a state document in etcd that does not
// decode is not applied (the last table stays); status says so, and a
// change is refused with 503 state_unusable naming the way out, not with
// a 409 conflict that no retry could get past.
func TestFleetDamagedStateInEtcd(t *testing.T) {
	f := newFleet(t, 1)
	ctx := context.Background()
	res, err := f.gws[0].admin.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the promote applied", 10*time.Second, func() bool { return f.gws[0].gw.Fleet().Applied() == res.Revision })
	cfg := *f.cfg
	cfg.StateDir = t.TempDir()
	st, err := gateway.OpenStore(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, res.Revision, []byte(`{"live":"green", "pools": garb`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "status naming the damaged revision", 10*time.Second, func() bool {
		s, err := f.gws[0].admin.Status(ctx)
		return err == nil && s.Fleet != nil && strings.Contains(s.Fleet.Store.Problem, "cannot be applied")
	})
	_, err = f.gws[0].admin.Rollback(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Code != "state_unusable" || !strings.Contains(ae.Message, "damaged") {
		t.Fatalf("rollback over a damaged state = %v, want 503 state_unusable", err)
	}
	if !servesPool(f.gws[0], "green") {
		t.Fatal("the damaged state changed the routing")
	}
}
