package gateway

import (
	"context"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/driver"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/route"
)

// lbDriver is the external load balancer a gateway drives (nil for the
// builtin driver).
type lbDriver = driver.Driver

// newApplier returns what applies routing tables for cfg.Driver: the
// builtin proxy alone, or a load balancer driver and then the proxy.
func (g *Gateway) newApplier(cfg *config.Config) (rollout.Applier, error) {
	var (
		d   driver.Driver
		err error
	)
	switch cfg.Driver {
	case "nginx":
		n := cfg.Nginx
		d, err = driver.NewNginx(driver.NginxOptions{
			File:           n.UpstreamFile,
			Render:         driver.NginxRender{Upstream: n.UpstreamName, Keepalive: n.Keepalive, Directives: n.UpstreamDirectives},
			TestCommand:    n.TestCommand,
			ReloadCommand:  n.ReloadCommand,
			CommandTimeout: n.CommandTimeout.D(),
			Verify:         driver.Verifier{URL: n.VerifyURL, Timeout: n.VerifyTimeout.D()},
			Logger:         g.log.With("driver", "nginx"),
		})
	case "haproxy":
		h := cfg.HAProxy
		d, err = driver.NewHAProxy(driver.HAProxyOptions{
			Socket:        h.AdminSocket,
			SocketTimeout: h.SocketTimeout.D(),
			MapFile:       h.MapFile,
			MapKey:        h.MapKey,
			Backends:      h.Backends,
			ConfigFile:    h.ConfigFile,
			Verify:        driver.Verifier{URL: h.VerifyURL, Timeout: h.VerifyTimeout.D()},
			Logger:        g.log.With("driver", "haproxy"),
		})
	default:
		return builtin{g.proxy}, nil
	}
	if err != nil {
		return nil, err
	}
	g.lb = d
	return driven{lb: d, proxy: g.proxy}, nil
}

// driven applies a routing table to an external load balancer and, once
// the load balancer serves it, to the builtin proxy too (which keeps
// cutover's own listener, status and previews in step). When the load
// balancer refuses, the proxy keeps the previous table as well, so nothing
// in this process disagrees with what the load balancer serves.
type driven struct {
	lb    driver.Driver
	proxy *proxy.Handler
}

// Apply implements rollout.Applier.
func (a driven) Apply(ctx context.Context, t *route.Table) error {
	if err := a.lb.Apply(ctx, t); err != nil {
		return err
	}
	a.proxy.Apply(t)
	return nil
}

// runDriver keeps the load balancer in step with replica health until ctx
// is done: every health interval (at most a second) it runs SyncDriver.
// With the builtin driver it returns at once.
func (g *Gateway) runDriver(ctx context.Context) {
	if g.lb == nil {
		return
	}
	t := time.NewTicker(min(time.Second, g.cfg.Health.Interval.D()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := g.SyncDriver(ctx); err != nil && ctx.Err() == nil {
				g.log.Error("load balancer: applying a replica health change failed; retrying later", "driver", g.cfg.Driver, "error", err)
			}
		}
	}
}

// SyncDriver runs one tick of runDriver: when replica health changed since
// the load balancer was last told, it re-applies the current table
// (nginx: replicas marked down or up; HAProxy: servers in or out of
// maintenance). Tests call it after Checker().Tick. It does nothing with
// the builtin driver, whose proxy reads health on every request.
func (g *Gateway) SyncDriver(ctx context.Context) error {
	if g.lb == nil {
		return nil
	}
	return g.lb.Sync(ctx)
}

var (
	_ rollout.Applier = builtin{}
	_ rollout.Applier = driven{}
)
