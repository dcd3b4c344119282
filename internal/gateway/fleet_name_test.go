package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

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
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
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
