package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
	"github.com/cutover-dev/cutover/internal/store"
)

// Applier is the data plane as the controller sees it: something that
// takes a new routing table. The builtin gateway's proxy is one.
type Applier interface {
	Apply(*route.Table)
}

// Prober checks one replica now: health and the model it must serve.
type Prober interface {
	Probe(ctx context.Context, r *pool.Replica, model string) error
}

// Refusal is a transition the controller declined, with the reason. The
// admin API answers it with 409.
type Refusal struct {
	// Code is a short machine-readable reason, such as no_healthy_replica.
	Code string
	// Reason says why, naming the pool and replicas concerned.
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// Options configures a Controller.
type Options struct {
	Store   store.Store
	Applier Applier
	Prober  Prober
	// Pools are blue and green.
	Pools []*pool.Pool
	// ModelName is the client-facing model name, "" for pass-through.
	ModelName string
	// InitialLive is the live pool when the store is empty.
	InitialLive string
	// ProbeTimeout bounds the checks made before a switch.
	ProbeTimeout time.Duration
	// Logger receives one line per transition. Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Controller owns the live-pool state. Transitions are serialised by mu
// and persisted with compare-and-swap on the store revision before the
// new routing table is applied.
type Controller struct {
	opts  Options
	pools map[string]*pool.Pool
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex // serialises transitions; guards state and rev
	state State
	rev   int64
}

// New returns a controller; call Start before anything else.
func New(opts Options) (*Controller, error) {
	c := &Controller{opts: opts, pools: map[string]*pool.Pool{}, log: opts.Logger, now: opts.Now}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.opts.ProbeTimeout <= 0 {
		c.opts.ProbeTimeout = 5 * time.Second
	}
	for _, p := range opts.Pools {
		c.pools[p.Name] = p
	}
	if _, ok := c.pools[opts.InitialLive]; !ok {
		return nil, fmt.Errorf("initial live pool %q is not configured", opts.InitialLive)
	}
	return c, nil
}

// Start loads the persisted state (or writes the initial one) and applies
// it to the data plane. After a restart, even after kill -9, the persisted
// live pool wins over the configuration's.
func (c *Controller) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, err := c.opts.Store.Get(ctx)
	if err != nil {
		return err
	}
	if rec.Revision == 0 {
		st := State{Live: c.opts.InitialLive}
		if err := c.commitLocked(ctx, 0, st, event{Actor: "controller", Action: "init", To: st.Live, Reason: "first start: live pool from config"}); err != nil {
			return err
		}
	} else {
		st, err := decodeState(rec.Data)
		if err != nil {
			return err
		}
		if _, ok := c.pools[st.Live]; !ok {
			return fmt.Errorf("persisted live pool %q is not configured", st.Live)
		}
		c.state, c.rev = st, rec.Revision
		c.log.Info("state restored", "live", st.Live, "revision", rec.Revision)
	}
	c.applyLocked()
	return nil
}

// commitLocked persists st as revision rev+1 with its history event, then
// makes it current. It does not apply it.
func (c *Controller) commitLocked(ctx context.Context, rev int64, st State, ev event) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	ev.Time = c.now().UTC()
	ev.Revision = rev + 1
	evb, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if err := c.opts.Store.Put(ctx, rev, data, evb); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Someone else wrote: take their state so the next call starts
			// from the truth.
			if rec, gerr := c.opts.Store.Get(ctx); gerr == nil {
				if s, derr := decodeState(rec.Data); derr == nil {
					c.state, c.rev = s, rec.Revision
					c.applyLocked()
				}
			}
			return &Refusal{Code: "conflict", Reason: "the state changed concurrently (" + err.Error() + "); check status and retry"}
		}
		return err
	}
	c.state, c.rev = st, rev+1
	c.log.Info("transition", "action", ev.Action, "from", ev.From, "to", ev.To, "revision", ev.Revision, "actor", ev.Actor)
	return nil
}

func (c *Controller) applyLocked() {
	ps := make([]*pool.Pool, 0, len(c.pools))
	for _, p := range c.pools {
		ps = append(ps, p)
	}
	c.opts.Applier.Apply(route.New(c.rev, c.state.Live, c.opts.ModelName, ps...))
}

// Promote makes the standby pool live. It refuses (with a *Refusal) when
// the standby cannot serve: no replica healthy, or none answering a fresh
// check with its configured model. Nothing changes then.
func (c *Controller) Promote(ctx context.Context, actor string) (api.SwitchResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.standbyLocked()
	return c.switchLocked(ctx, "promote", target, actor)
}

// Rollback makes the previous live pool live again, with the same checks.
func (c *Controller) Rollback(ctx context.Context, actor string) (api.SwitchResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Previous == "" {
		return api.SwitchResult{}, &Refusal{Code: "nothing_to_roll_back", Reason: fmt.Sprintf("no previous live pool to roll back to: %s has been live since the first start", c.state.Live)}
	}
	return c.switchLocked(ctx, "rollback", c.state.Previous, actor)
}

func (c *Controller) standbyLocked() string {
	for name := range c.pools {
		if name != c.state.Live {
			return name
		}
	}
	return ""
}

func (c *Controller) switchLocked(ctx context.Context, action, target, actor string) (api.SwitchResult, error) {
	p := c.pools[target]
	if p == nil || target == c.state.Live {
		return api.SwitchResult{}, &Refusal{Code: "no_target", Reason: fmt.Sprintf("cannot %s: no other pool than %s", action, c.state.Live)}
	}
	if err := c.canServe(ctx, p); err != nil {
		return api.SwitchResult{}, &Refusal{Code: "pool_cannot_serve", Reason: fmt.Sprintf("%s refused: %v; %s stays live", action, err, c.state.Live)}
	}
	from := c.state.Live
	st := State{Live: target, Previous: from, SwitchedAt: c.now().UTC()}
	if err := c.commitLocked(ctx, c.rev, st, event{Actor: actor, Action: action, From: from, To: target}); err != nil {
		return api.SwitchResult{}, err
	}
	c.applyLocked()
	return api.SwitchResult{Action: action, Live: target, Previous: from, Revision: c.rev, SwitchedAt: st.SwitchedAt}, nil
}

// canServe checks that at least one replica of p is healthy and answers a
// fresh check listing p's model.
func (c *Controller) canServe(ctx context.Context, p *pool.Pool) error {
	if len(p.Replicas) == 0 {
		return fmt.Errorf("pool %s has no replicas", p.Name)
	}
	var reasons []string
	var healthy []*pool.Replica
	for _, r := range p.Replicas {
		if r.Healthy() {
			healthy = append(healthy, r)
		} else {
			reasons = append(reasons, fmt.Sprintf("%s: unhealthy (%s)", r.Name, r.Health().LastError))
		}
	}
	if len(healthy) == 0 {
		return fmt.Errorf("pool %s has no healthy replica (%s)", p.Name, strings.Join(reasons, "; "))
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout)
	defer cancel()
	errs := make([]error, len(healthy))
	var wg sync.WaitGroup
	for i, r := range healthy {
		wg.Go(func() { errs[i] = c.opts.Prober.Probe(ctx, r, p.Model) })
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		if err == nil {
			ok++
		} else {
			reasons = append(reasons, fmt.Sprintf("%s: %v", healthy[i].Name, err))
		}
	}
	if ok == 0 {
		return fmt.Errorf("pool %s cannot serve model %q (%s)", p.Name, p.Model, strings.Join(reasons, "; "))
	}
	return nil
}

// Status returns the current state with the pools' live health.
func (c *Controller) Status() api.Status {
	c.mu.Lock()
	st, rev := c.state, c.rev
	c.mu.Unlock()
	s := api.Status{Live: st.Live, Previous: st.Previous, Revision: rev, ModelName: c.opts.ModelName, SwitchedAt: st.SwitchedAt, Pools: map[string]api.Pool{}}
	for name, p := range c.pools {
		ap := api.Pool{Name: name, Model: p.Model, Live: name == st.Live, InFlight: p.InFlight(), HealthyReplicas: p.HealthyCount(), Replicas: []api.Replica{}}
		for _, r := range p.Replicas {
			h := r.Health()
			ap.Replicas = append(ap.Replicas, api.Replica{URL: r.Name, Healthy: h.Healthy, InFlight: r.InFlight(), LastError: h.LastError, CheckedAt: h.CheckedAt, ChangedAt: h.ChangedAt})
		}
		s.Pools[name] = ap
	}
	return s
}

// History returns the latest limit events, oldest first.
func (c *Controller) History(ctx context.Context, limit int) ([]api.Event, error) {
	raw, err := c.opts.Store.History(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Event, 0, len(raw))
	for _, b := range raw {
		var e event
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("decode history event: %w", err)
		}
		out = append(out, api.Event(e))
	}
	return out, nil
}
