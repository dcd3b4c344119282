package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
)

// TestFleetRefusesANameAnotherHostRuns: a gateway whose name a running
// gateway on another host holds does not start (exit 2 naming `name`):
// with one name the two overwrote each other's member key (status listed
// 3 of 4 gateways, the admin address flipping) and validation samples.
func TestFleetRefusesANameAnotherHostRuns(t *testing.T) {
	f := newFleet(t, 1)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{f.etcd.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	kctx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	if _, err := cli.KeepAlive(kctx, lease.ID); err != nil { // a live gateway renews its lease
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"name": "gw-dup", "admin": "10.9.9.9:8081", "host": "another-host.invalid"})
	if _, err := cli.Put(ctx, f.cfg.Etcd.Prefix+"members/gw-dup", string(b), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	cfg := *f.cfg
	cfg.Name, cfg.StateDir = "gw-dup", t.TempDir()
	gw, err := gateway.New(ctx, &cfg, testToken, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		stopped, cancel := context.WithCancel(ctx)
		cancel()
		_ = gw.Run(stopped)
		t.Fatal("a gateway started under a name a gateway on another host runs")
	}
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Fields) != 1 || ce.Fields[0].Key != "name" {
		t.Fatalf("error = %v, want a config error naming `name`", err)
	}
}

// TestFleetStatusShowsAConfigThatDiffers: a gateway whose file differs in
// what every gateway must share (here model_name) joined the fleet
// silently and answered every request 404 or 503; the fleet status now
// carries each member's configuration digest, and the gateways' differ.
func TestFleetStatusShowsAConfigThatDiffers(t *testing.T) {
	f := newFleet(t, 2)
	odd := f.startWith(t, "gw-odd", t.TempDir(), func(c *config.Config) { c.ModelName = "other-name" })
	ctx := context.Background()
	var st *api.Fleet
	waitFor(t, "three members with their digests", 10*time.Second, func() bool {
		s, err := f.gws[0].admin.Status(ctx)
		if err != nil || s.Fleet == nil || len(s.Fleet.Members) != 3 {
			return false
		}
		st = s.Fleet
		for _, m := range st.Members {
			if m.Config == "" {
				return false
			}
		}
		return true
	})
	for _, m := range st.Members {
		if differs := m.Config != st.Config; differs != (m.Name == "gw-odd") {
			t.Errorf("member %s config %s, this gateway's %s: differs=%v", m.Name, m.Config, st.Config, differs)
		}
	}
	if s, err := odd.admin.Status(ctx); err != nil || s.Fleet.Config == st.Config {
		t.Errorf("gw-odd's own digest %v equals the others' (%v)", s.Fleet, err)
	}
}
