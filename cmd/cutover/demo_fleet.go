package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/gateway"
)

// demoFleetEtcd, for --gateways above 1, starts an embedded single-member
// etcd with its data in stateDir and points cfg at it, as gateway gw-1.
// The returned stop ends etcd.
func demoFleetEtcd(cfg *config.Config, gateways int, stateDir string) (stop func(), err error) {
	if gateways <= 1 {
		return func() {}, nil
	}
	srv, err := etcdtest.Start(filepath.Join(stateDir, "etcd"))
	if err != nil {
		return nil, fmt.Errorf("demo etcd: %w", err)
	}
	cfg.Name = "gw-1"
	cfg.Etcd = &config.Etcd{Endpoints: []string{srv.Endpoint()}, Prefix: "/cutover/demo/",
		DialTimeout: config.Duration(config.DefaultEtcdDialTimeout), SessionTTL: config.Duration(config.DefaultEtcdSessionTTL)}
	return srv.Stop, nil
}

// runDemoFleet starts gateways gw-2 … gw-N beside first (same pools, same
// etcd, ports chosen by the system), prints where they listen and how to
// see a promote on one move traffic on all, and runs them all until ctx
// is done.
func runDemoFleet(ctx context.Context, w io.Writer, first *gateway.Gateway, cfg *config.Config, gateways int, token string, log *slog.Logger) error {
	gws := []*gateway.Gateway{first}
	for i := 2; i <= gateways; i++ {
		c := *cfg
		c.Name = fmt.Sprintf("gw-%d", i)
		c.Listen, c.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
		c.StateDir = filepath.Join(cfg.StateDir, c.Name)
		gw, err := gateway.New(ctx, &c, token, log.With("gateway", c.Name))
		if err != nil {
			return fmt.Errorf("start %s: %w", c.Name, err)
		}
		gws = append(gws, gw)
	}
	var traffic, admin []string
	for _, gw := range gws {
		traffic, admin = append(traffic, gw.TrafficAddr()), append(admin, gw.AdminAddr())
	}
	printDemoFleet(w, selfCommand(), cfg.Etcd.Endpoints[0], cfg.Etcd.Prefix, traffic, admin)
	var wg sync.WaitGroup
	errs := make([]error, len(gws))
	for i, gw := range gws {
		wg.Go(func() { errs[i] = gw.Run(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// printDemoFleet prints where the fleet's gateways listen and the
// commands to promote on the last one and see traffic move on all; self
// is how to run this binary (as the banner above says it).
func printDemoFleet(w io.Writer, self, etcd, prefix string, traffic, admin []string) {
	fmt.Fprintf(w, "\nFleet: %d gateways sharing one state in an embedded etcd (%s, prefix %s):\n", len(admin), etcd, prefix)
	for i := range admin {
		fmt.Fprintf(w, "  gw-%d  traffic http://%s   admin http://%s\n", i+1, traffic[i], admin[i])
	}
	fmt.Fprintf(w, "\nPromote on gw-%d, then watch traffic move on every gateway:\n", len(admin))
	fmt.Fprintf(w, "  %s promote --admin http://%s\n", self, admin[len(admin)-1])
	for i := range traffic {
		fmt.Fprintf(w, "  curl -si http://%s/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\":\"llama\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' | grep -i x-cutover-pool   # gw-%d\n", traffic[i], i+1)
	}
	fmt.Fprintf(w, "  %s status --admin http://%s   # the fleet: leader, members, store\n\n", self, admin[0])
}
