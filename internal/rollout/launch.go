package rollout

import (
	"context"
	"fmt"
	"sync"
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
	// Launch starts n replicas of model (n < 1: the configured
	// launch.replicas) and returns once every one runs, or with an error
	// once one failed or the ready timeout passed; on error it has
	// stopped those it started. It calls progress with how many of how
	// many run, as that changes.
	Launch(ctx context.Context, model string, n int, progress func(running, total int)) ([]LaunchedReplica, error)
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
	start := c.now()
	if !c.launch.begin(model, start) {
		return nil, refuse("launch_in_progress", "another deploy is starting replicas through the agents (%s); wait for it", c.launch.note())
	}
	defer c.launch.end()
	c.log.Info("launching replicas through the agents", "model", model)
	l, err := c.opts.Launcher.Launch(ctx, model, 0, c.launch.progress)
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

// launchTracker is the one launch in progress, for the status (not
// persisted: a launch belongs to its deploy request).
type launchTracker struct {
	mu             sync.Mutex
	model          string
	since          time.Time
	running, total int
}

// begin records a launch of model; false while another is in progress.
func (t *launchTracker) begin(model string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.model != "" {
		return false
	}
	t.model, t.since, t.running, t.total = model, now, 0, 0
	return true
}

func (t *launchTracker) progress(running, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running, t.total = running, total
}

func (t *launchTracker) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.model = ""
}

// note describes the launch in progress, "" without one.
func (t *launchTracker) note() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.model == "" {
		return ""
	}
	n := fmt.Sprintf("launching replicas of %s through the agents since %s", t.model, t.since.UTC().Format(time.RFC3339))
	if t.total > 0 {
		n += fmt.Sprintf(": %d of %d running", t.running, t.total)
	}
	return n
}
