package rollout

import (
	"context"
	"fmt"
	"time"
)

// LaunchedReplica is a replica the controller started through an agent:
// enough to stop it again at retirement.
type LaunchedReplica struct {
	// Agent is the agent's configured name.
	Agent string `json:"agent"`
	// ID is the replica's id at that agent.
	ID string `json:"id"`
	// URL is where the gateway reaches it (a pool replica URL).
	URL string `json:"url"`
}

// Launcher starts and stops replicas through the agents (`agents:` and
// `launch:` in the configuration).
type Launcher interface {
	// Launch starts the configured number of replicas of model and
	// returns once every one runs, or with an error once one failed or
	// the ready timeout passed; on error it has stopped those it started.
	Launch(ctx context.Context, model string) ([]LaunchedReplica, error)
	// Stop stops the replicas (a replica already gone is not an error)
	// and returns once each has exited.
	Stop(ctx context.Context, replicas []LaunchedReplica) error
}

// RetentionStop retires the old pool at once after a promotion: no
// retention (whatever rollout.retention says), so no rollback; the
// retirement drains it, runs the on_retire hooks and stops its replicas
// launched through the agents.
const RetentionStop = "stop"

// retention is how long the old pool is retained after a promotion.
func (c *Controller) retention() time.Duration {
	if c.opts.Settings.RetentionMode == RetentionStop {
		return 0
	}
	return c.opts.Settings.Retention
}

// launchFor starts the replicas of a deployment of model given without
// replicas, or refuses when no agents are configured.
func (c *Controller) launchFor(ctx context.Context, model string) ([]LaunchedReplica, error) {
	if c.opts.Launcher == nil {
		return nil, badRequest("no_replicas", "at least one replica URL is required (no agents are configured to start replicas)")
	}
	c.log.Info("launching replicas through the agents", "model", model)
	start := c.now()
	l, err := c.opts.Launcher.Launch(ctx, model)
	if err != nil {
		return nil, &Refusal{Status: 502, Code: "launch_failed", Reason: fmt.Sprintf("starting replicas of %s through the agents: %v", model, err)}
	}
	c.log.Info("launched replicas running", "model", model, "replicas", len(l), "took", c.now().Sub(start).Round(time.Millisecond))
	return l, nil
}

// stopStaleStandby stops the agent replicas still held by the idle
// standby pool (a deployment that failed, was aborted or rolled back)
// before a new launch replaces them, so their GPUs are free for it. A
// forced deploy over a retained pool leaves them to that pool's
// retirement.
func (c *Controller) stopStaleStandby(ctx context.Context, st State, forced bool) {
	if forced {
		return
	}
	target := standby(st)
	stale := c.specOf(st, target).Launched
	if len(stale) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := c.stopLaunched(sctx, stale); err != nil {
		c.log.Warn("stopping the standby pool's previous agent replicas", "pool", target, "err", err)
		return
	}
	c.log.Info("stopped the standby pool's previous agent replicas before a new launch", "pool", target, "replicas", len(stale))
}

// stopLaunched stops replicas launched for a deployment that did not
// happen (refused after the launch).
func (c *Controller) stopLaunched(ctx context.Context, l []LaunchedReplica) error {
	if len(l) == 0 || c.opts.Launcher == nil {
		return nil
	}
	return c.opts.Launcher.Stop(ctx, l)
}

// launchedURLs returns the replica URLs of l.
func launchedURLs(l []LaunchedReplica) []string {
	out := make([]string, len(l))
	for i, r := range l {
		out[i] = r.URL
	}
	return out
}
