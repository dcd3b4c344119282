package rollout

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
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
	// GPUs is how many GPUs the agent gave it (the cost accounting).
	GPUs int `json:"gpus,omitempty"`
}

// Launch slot states (LaunchSlot.State).
const (
	SlotAsked   = "asked"   // the agent is being asked (or was, before a restart)
	SlotStarted = "started" // the agent answered with the replica's id
	SlotReady   = "ready"   // it runs
	SlotFailed  = "failed"  // it exited or never ran; the launch fails
)

// LaunchSlot is one replica of a launch: its agent, the key it is asked
// with, and how far it got.
type LaunchSlot struct {
	Agent string `json:"agent"`
	// Key identifies it at its agent (agent.StartRequest.Key): asking
	// again with it after a restart answers the replica already started
	// instead of starting another.
	Key   string `json:"key"`
	ID    string `json:"id,omitempty"`
	URL   string `json:"url,omitempty"`
	GPUs  int    `json:"gpus,omitempty"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// LaunchState is the launch in progress (State.Launch), persisted at
// every step so that a restarted controller (or a fleet's new leader)
// carries it on: no replica started twice, none forgotten.
type LaunchState struct {
	// ID prefixes the slots' keys.
	ID    string    `json:"id"`
	Model string    `json:"model"`
	Since time.Time `json:"since"`
	// Actor, APIKeyFile and Force are the deploy request's, to make the
	// deployment once the replicas run.
	Actor      string       `json:"actor"`
	APIKeyFile string       `json:"api_key_file,omitempty"`
	Force      bool         `json:"force,omitempty"`
	Slots      []LaunchSlot `json:"slots,omitempty"`
}

// Launcher starts and stops replicas through the agents (`agents:` and
// `launch:` in the configuration).
type Launcher interface {
	// Launch starts n replicas of model (n < 1: the configured
	// launch.replicas) and returns once every one runs, or with an error
	// once one failed or the ready timeout passed; on error it has
	// stopped those it started. Without slots it places them first (keys
	// key.0, key.1, ...); with slots (a launch carried on after a
	// restart) it asks each slot's agent again with its key, and n does
	// not count. It calls progress with the slots each time one changes,
	// and before asking any agent.
	Launch(ctx context.Context, key, model string, n int, slots []LaunchSlot, progress func([]LaunchSlot)) ([]LaunchedReplica, error)
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

// launchFor starts the replicas of a deployment of req.Model given
// without replicas, or refuses when no agents are configured or another
// launch is in progress. The launch is persisted (State.Launch) before
// any agent is asked and at each step; it is not tied to the caller (an
// admin client that hangs up), only bounded by launch.ready_timeout.
func (c *Controller) launchFor(ctx context.Context, actor string, req api.DeployRequest) ([]LaunchedReplica, string, error) {
	if c.opts.Launcher == nil {
		return nil, "", badRequest("no_replicas", "at least one replica URL is required (no agents are configured to start replicas)")
	}
	if !c.launch.begin(req.Model, c.now()) {
		return nil, "", refuse("launch_in_progress", "another deploy is starting replicas through the agents (%s); wait for it", c.launch.note())
	}
	defer c.launch.end()
	var ls *LaunchState
	c.tmu.Lock()
	err := c.commit(ctx, actor, func(s *State) ([]event, error) {
		if l := s.Launch; l != nil {
			return nil, refuse("launch_in_progress", "launch %s of %s through the agents (since %s) is still in progress; wait for it", l.ID, l.Model, stamp(l.Since))
		}
		now := c.now().UTC()
		c.mu.Lock()
		rev := c.rev + 1 // the revision this commit writes: a unique key prefix
		c.mu.Unlock()
		ls = &LaunchState{ID: fmt.Sprintf("launch-r%d", rev), Model: req.Model, Since: now, Actor: actor, APIKeyFile: req.APIKeyFile, Force: req.Force}
		s.Launch = ls
		return []event{{Action: "launch", Reason: fmt.Sprintf("launching replicas of %s through the agents (%s)", req.Model, ls.ID)}}, nil
	})
	c.tmu.Unlock()
	if err != nil {
		return nil, "", err
	}
	l, err := c.runLaunch(context.WithoutCancel(ctx), ls)
	return l, ls.ID, err
}

// runLaunch has the launcher start (or find again) the replicas of ls,
// persisting each step; on failure it clears the launch from the state.
func (c *Controller) runLaunch(ctx context.Context, ls *LaunchState) ([]LaunchedReplica, error) {
	start := c.now()
	c.log.Info("launching replicas through the agents", "model", ls.Model, "launch", ls.ID, "carried_on", len(ls.Slots) > 0)
	l, err := c.opts.Launcher.Launch(ctx, ls.ID, ls.Model, 0, slices.Clone(ls.Slots), func(slots []LaunchSlot) { c.saveSlots(ctx, ls.ID, slots) })
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // shutting down: carried on after the restart
		}
		c.endLaunch(ctx, ls.ID, fmt.Sprintf("launch %s of %s failed: %v", ls.ID, ls.Model, err))
		return nil, &Refusal{Status: 502, Code: "launch_failed", Reason: fmt.Sprintf("starting replicas of %s through the agents: %v", ls.Model, err)}
	}
	c.log.Info("launched replicas running", "model", ls.Model, "replicas", len(l), "took", c.now().Sub(start).Round(time.Millisecond))
	return l, nil
}

// saveSlots persists the launch's slots (a commit without a history
// event) and updates the status's note.
func (c *Controller) saveSlots(ctx context.Context, id string, slots []LaunchSlot) {
	c.launch.slots(slots)
	c.commitStep(ctx, false, "record the launch's progress", func(s *State) ([]event, error) {
		if s.Launch == nil || s.Launch.ID != id {
			return nil, errStale
		}
		l := *s.Launch
		l.Slots = slices.Clone(slots)
		s.Launch = &l
		return nil, nil
	}, "launch", id)
}

// endLaunch clears launch id from the state, with reason in the history.
func (c *Controller) endLaunch(ctx context.Context, id, reason string) {
	c.commitStep(ctx, false, "clear the launch", func(s *State) ([]event, error) {
		if s.Launch == nil || s.Launch.ID != id {
			return nil, errStale
		}
		s.Launch = nil
		return []event{{Action: "launch_ended", Reason: reason}}, nil
	}, "launch", id)
}

// resumeLaunch carries on the launch a previous controller left in the
// state (restart, or a fleet's new leader): it asks each slot's agent
// again with its key, so nothing is started twice, then makes the
// deployment as the deploy would have. Run calls it.
func (c *Controller) resumeLaunch(ctx context.Context) {
	st, _, _ := c.snapshot()
	ls := st.Launch
	if ls == nil || c.opts.Launcher == nil {
		return
	}
	if !c.launch.begin(ls.Model, ls.Since) {
		return // this process runs it
	}
	defer c.launch.end()
	c.log.Info("carrying on the launch left by the previous controller", "launch", ls.ID, "model", ls.Model, "slots", len(ls.Slots))
	l, err := c.runLaunch(ctx, ls)
	if err != nil {
		c.log.Warn("launch carried on after a restart failed", "launch", ls.ID, "error", err)
		return
	}
	req := api.DeployRequest{Model: ls.Model, APIKeyFile: ls.APIKeyFile, Force: ls.Force}
	if _, err := c.deployLaunched(ctx, ls.Actor, req, ls.ID, l); err != nil {
		c.log.Warn("deployment of the launch carried on after a restart refused", "launch", ls.ID, "error", err)
	}
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
	if err := c.opts.Launcher.Stop(ctx, l); err != nil {
		return err // still held, or kept as orphans when dropped
	}
	c.release(l)
	return nil
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

// slots is progress for a launcher's slots: how many are ready.
func (t *launchTracker) slots(slots []LaunchSlot) {
	ready := 0
	for _, sl := range slots {
		if sl.State == SlotReady {
			ready++
		}
	}
	t.progress(ready, len(slots))
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
