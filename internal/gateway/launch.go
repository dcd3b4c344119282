package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/agent"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/secret"
)

// agentLauncher starts a deployment's replicas through the configured
// agents (rollout.Launcher).
type agentLauncher struct {
	clients  []*agent.Client
	replicas int
	gpus     int
	ready    time.Duration
	log      *slog.Logger
	// every is the period of the agents' checks while they answer
	// (health.interval); now is the clock of those checks.
	every time.Duration
	now   func() time.Time
	watch agentWatch // see agents.go
}

// newLauncher returns the launcher of cfg's agents, or nil without any.
// It reads every agent's token file.
func newLauncher(cfg *config.Config, log *slog.Logger) (*agentLauncher, error) {
	if len(cfg.Agents) == 0 {
		return nil, nil
	}
	l := &agentLauncher{replicas: cfg.Launch.Replicas, gpus: cfg.Launch.GPUsPerReplica, ready: cfg.Launch.ReadyTimeout.D(), log: log,
		every: max(cfg.Health.Interval.D(), 100*time.Millisecond), now: time.Now}
	hc := &http.Client{}
	for i, a := range cfg.Agents {
		tok, err := secret.ReadFile(a.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("agents[%d].token_file %s: %w", i, a.TokenFile, err)
		}
		c, err := agent.NewClient(a.Name, a.URL, tok, hc)
		if err != nil {
			return nil, fmt.Errorf("agents[%d].url: %w", i, err)
		}
		l.clients = append(l.clients, c)
		l.watch.st = append(l.watch.st, api.AgentStatus{Name: a.Name, URL: a.URL})
		l.watch.fails = append(l.watch.fails, 0)
	}
	return l, nil
}

func (l *agentLauncher) client(name string) *agent.Client {
	for _, c := range l.clients {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// place spreads n replicas over the agents: each goes to the agent with
// the most free GPUs left. Unreachable agents get none.
func (l *agentLauncher) place(ctx context.Context, n int) ([]*agent.Client, error) {
	free := make([]int, len(l.clients))
	var errs []error
	for i, c := range l.clients {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, _, err := c.FreeGPUs(cctx)
		cancel()
		if err != nil {
			errs = append(errs, err)
			free[i] = 0
			continue
		}
		free[i] = n
	}
	if len(errs) == len(l.clients) {
		// Not a matter of free GPUs: say what every agent answered (a
		// wrong token's 401, say).
		return nil, fmt.Errorf("no agent answered how many GPUs it has free: %w", errors.Join(errs...))
	}
	out := make([]*agent.Client, 0, n)
	for range n {
		best := -1
		for i, n := range free {
			if n >= l.gpus && (best < 0 || n > free[best]) {
				best = i
			}
		}
		if best < 0 {
			return nil, fmt.Errorf("no agent has %d free GPU(s) for replica %d of %d: %w", l.gpus, len(out)+1, n, errors.Join(append(errs, agent.ErrNoCapacity)...))
		}
		free[best] -= l.gpus
		out = append(out, l.clients[best])
	}
	return out, nil
}

// Launch implements rollout.Launcher: it places n replicas (n < 1:
// launch.replicas) unless slots carry on an earlier launch, asks every
// agent at once with each slot's key, and waits (launch.ready_timeout)
// until all run.
func (l *agentLauncher) Launch(ctx context.Context, key, model string, n int, slots []rollout.LaunchSlot, progress func([]rollout.LaunchSlot)) ([]rollout.LaunchedReplica, error) {
	if len(slots) == 0 {
		if n < 1 {
			n = l.replicas
		}
		where, err := l.place(ctx, n)
		if err != nil {
			return nil, err
		}
		for i, c := range where {
			slots = append(slots, rollout.LaunchSlot{Agent: c.Name, Key: fmt.Sprintf("%s.%d", key, i), State: rollout.SlotAsked})
		}
	}
	var mu sync.Mutex // guards slots while the replicas start
	report := func(i int, edit func(*rollout.LaunchSlot)) {
		mu.Lock()
		defer mu.Unlock()
		edit(&slots[i])
		progress(slices.Clone(slots))
	}
	progress(slices.Clone(slots)) // on record before any agent is asked
	ctx, cancel := context.WithTimeout(ctx, l.ready+30*time.Second)
	defer cancel()
	out := make([]rollout.LaunchedReplica, len(slots))
	errs := make([]error, len(slots))
	var wg sync.WaitGroup
	for i, sl := range slots {
		c := l.client(sl.Agent)
		if c == nil {
			errs[i] = fmt.Errorf("replica %d of %s: agent %q is no longer configured", i+1, model, sl.Agent)
			continue
		}
		wg.Go(func() {
			req := agent.StartRequest{Model: model, GPUs: l.gpus, Key: sl.Key}
			r, err := c.StartKey(ctx, req, 0)
			if err == nil {
				report(i, func(s *rollout.LaunchSlot) {
					s.ID, s.URL, s.GPUs, s.State = r.ID, c.ReplicaURL(r), len(r.GPUs), rollout.SlotStarted
				})
				r, err = c.StartKey(ctx, req, l.ready) // the same replica, once it runs
			}
			if err != nil {
				errs[i] = fmt.Errorf("replica %d of %s on agent %s: %w", i+1, model, c.Name, err)
				report(i, func(s *rollout.LaunchSlot) { s.State, s.Error = rollout.SlotFailed, err.Error() })
				return
			}
			out[i] = rollout.LaunchedReplica{Agent: c.Name, ID: r.ID, URL: c.ReplicaURL(r), GPUs: len(r.GPUs)}
			l.log.Info("agent replica running", "agent", c.Name, "id", r.ID, "model", model, "gpus", r.GPUs, "url", out[i].URL)
			report(i, func(s *rollout.LaunchSlot) { s.State = rollout.SlotReady })
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var started []rollout.LaunchedReplica
		for _, sl := range slots {
			if sl.ID != "" {
				started = append(started, rollout.LaunchedReplica{Agent: sl.Agent, ID: sl.ID, URL: sl.URL, GPUs: sl.GPUs})
			}
		}
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return nil, err // the controller stops: its successor carries the launch on
		}
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer scancel()
		if serr := l.Stop(sctx, started); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
	l.checkNow(ctx) // the new replicas are seen before a promote asks
	return out, nil
}

// Stop implements rollout.Launcher. A replica its agent no longer knows
// counts as stopped.
func (l *agentLauncher) Stop(ctx context.Context, replicas []rollout.LaunchedReplica) error {
	var errs []error
	for _, r := range replicas {
		c := l.client(r.Agent)
		if c == nil {
			errs = append(errs, fmt.Errorf("replica %s: agent %q is no longer configured", r.ID, r.Agent))
			continue
		}
		got, err := c.Stop(ctx, r.ID)
		var ae *agent.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", r.ID, err))
			continue
		}
		l.log.Info("agent replica stopped", "agent", r.Agent, "id", r.ID, "state", got.State)
	}
	return errors.Join(errs...)
}
