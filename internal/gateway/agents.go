package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// agentBackoff is the wait before checking again an agent that failed n
// consecutive checks: 1s doubling, at most 30s.
func agentBackoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// agentWatch is what the controller knows of each agent: the answer to
// its last check (replicas and GPU ledger), up or down since when, the
// last error; guarded by mu. Index i is clients[i].
type agentWatch struct {
	mu    sync.Mutex
	st    []api.AgentStatus
	fails []int
}

// Agents returns every agent as last checked (the controller's
// Options.Agents).
func (l *agentLauncher) Agents() []api.AgentStatus {
	l.watch.mu.Lock()
	defer l.watch.mu.Unlock()
	out := make([]api.AgentStatus, len(l.watch.st))
	for i, a := range l.watch.st {
		a.Replicas = append([]api.AgentReplica(nil), a.Replicas...)
		out[i] = a
	}
	return out
}

// runWatch checks every agent when due (every interval while it answers,
// backing off while it does not) until ctx is done. checkNow checks
// every agent at once, apart from it.
func (l *agentLauncher) runWatch(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := l.checkDue(ctx, false)
		t.Reset(max(time.Until(next), 10*time.Millisecond))
	}
}

// checkNow checks every agent at once, and returns when done: a launch
// calls it so that the replicas it started are seen before its
// deployment can be promoted.
func (l *agentLauncher) checkNow(ctx context.Context) { l.checkDue(ctx, true) }

// checkDue checks, in parallel, every agent whose next check is due (all
// with force), and returns when the next check is due.
func (l *agentLauncher) checkDue(ctx context.Context, force bool) time.Time {
	now := l.now()
	var wg sync.WaitGroup
	l.watch.mu.Lock()
	for i := range l.clients {
		if force || !now.Before(l.watch.st[i].NextCheckAt) {
			wg.Go(func() { l.checkAgent(ctx, i) })
		}
	}
	l.watch.mu.Unlock()
	wg.Wait()
	l.watch.mu.Lock()
	defer l.watch.mu.Unlock()
	next := now.Add(l.every)
	for _, a := range l.watch.st {
		if a.NextCheckAt.Before(next) {
			next = a.NextCheckAt
		}
	}
	return next
}

// checkAgent asks agent i for its replicas and GPUs, and records the
// answer or the failure.
func (l *agentLauncher) checkAgent(ctx context.Context, i int) {
	c := l.clients[i]
	cctx, cancel := context.WithTimeout(ctx, min(l.every, 5*time.Second)+time.Second)
	defer cancel()
	rs, err := c.Replicas(cctx)
	free, total := 0, 0
	if err == nil {
		free, total, err = c.FreeGPUs(cctx)
	}
	if ctx.Err() != nil {
		return
	}
	now := l.now()
	l.watch.mu.Lock()
	defer l.watch.mu.Unlock()
	a := &l.watch.st[i]
	a.CheckedAt = now
	if err != nil {
		l.watch.fails[i]++
		if a.Up || a.Since.IsZero() {
			a.Since = now
			l.log.Warn("agent unreachable", "agent", c.Name, "error", err)
		}
		a.Up, a.LastError = false, err.Error()
		a.NextCheckAt = now.Add(agentBackoff(l.watch.fails[i]))
		return
	}
	if !a.Up {
		if !a.Since.IsZero() {
			l.log.Info("agent reachable again", "agent", c.Name, "down_for", now.Sub(a.Since).Round(time.Second))
		}
		a.Since = now
	}
	l.watch.fails[i] = 0
	a.Up, a.GPUs, a.FreeGPUs = true, total, free
	a.NextCheckAt = now.Add(l.every)
	a.Replicas = a.Replicas[:0]
	for _, r := range rs {
		a.Replicas = append(a.Replicas, api.AgentReplica{ID: r.ID, Model: r.Model, State: string(r.State), GPUs: r.GPUs, URL: c.ReplicaURL(r)})
	}
}
