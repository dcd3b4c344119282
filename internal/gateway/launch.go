package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

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
}

// newLauncher returns the launcher of cfg's agents, or nil without any.
// It reads every agent's token file.
func newLauncher(cfg *config.Config, log *slog.Logger) (rollout.Launcher, error) {
	if len(cfg.Agents) == 0 {
		return nil, nil
	}
	l := &agentLauncher{replicas: cfg.Launch.Replicas, gpus: cfg.Launch.GPUsPerReplica, ready: cfg.Launch.ReadyTimeout.D(), log: log}
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

// Launch implements rollout.Launcher: it starts n replicas (n < 1:
// launch.replicas) at once and waits (launch.ready_timeout) until all run.
func (l *agentLauncher) Launch(ctx context.Context, model string, n int, progress func(running, total int)) ([]rollout.LaunchedReplica, error) {
	if n < 1 {
		n = l.replicas
	}
	where, err := l.place(ctx, n)
	if err != nil {
		return nil, err
	}
	progress(0, len(where))
	var mu sync.Mutex
	running := 0
	ctx, cancel := context.WithTimeout(ctx, l.ready+30*time.Second)
	defer cancel()
	out := make([]rollout.LaunchedReplica, len(where))
	errs := make([]error, len(where))
	var wg sync.WaitGroup
	for i, c := range where {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.StartWait(ctx, model, l.gpus, l.ready)
			if err != nil {
				errs[i] = fmt.Errorf("replica %d of %s on agent %s: %w", i+1, model, c.Name, err)
				return
			}
			out[i] = rollout.LaunchedReplica{Agent: c.Name, ID: r.ID, URL: c.ReplicaURL(r)}
			l.log.Info("agent replica running", "agent", c.Name, "id", r.ID, "model", model, "gpus", r.GPUs, "url", out[i].URL)
			mu.Lock()
			running++
			progress(running, len(where))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var started []rollout.LaunchedReplica
		for _, r := range out {
			if r.ID != "" {
				started = append(started, r)
			}
		}
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer scancel()
		if serr := l.Stop(sctx, started); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
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
