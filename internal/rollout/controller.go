package rollout

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
	"github.com/cutover-dev/cutover/internal/secret"
	"github.com/cutover-dev/cutover/internal/selfaddr"
	"github.com/cutover-dev/cutover/internal/store"
	"github.com/cutover-dev/cutover/internal/validation"
)

// Applier makes a routing table take effect: the builtin gateway's proxy,
// or a driver for an external load balancer. An error means the table is
// not in effect and the previous one still is (the applier restored it).
type Applier interface {
	Apply(ctx context.Context, t *route.Table) error
}

// Prober checks one replica now: health and the model it must serve.
type Prober interface {
	Probe(ctx context.Context, r *pool.Replica, model string) error
}

// HookRunner runs one lifecycle hook.
type HookRunner interface {
	Run(ctx context.Context, s hook.Spec, p hook.Payload) hook.Outcome
}

// Refusal is a request the controller declined, with the reason. The
// admin API answers it with 409 (or Status when set).
type Refusal struct {
	// Code is a short machine-readable reason, such as no_healthy_replica.
	Code string
	// Reason says why, naming the pool, deployment and times concerned.
	Reason string
	// Status is the HTTP status to answer; 0 means 409.
	Status int
}

func (r *Refusal) Error() string { return r.Reason }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Reason: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Reason: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

// Validator measures a candidate pool and evaluates the gates; see package
// validation.
type Validator interface {
	Start(ctx context.Context, live string, candidate *pool.Pool)
	StartPost(pool string, baseline validation.Stats)
	Stop()
	Evaluate() ([]api.Gate, validation.Stats)
}

// ValidationSettings configure the validating phase and the
// post-promotion window.
type ValidationSettings struct {
	// Enabled inserts the validating phase between warming and ready.
	Enabled bool
	// Deadline bounds validating; at it the deployment fails with the
	// gates that failed or lacked samples.
	Deadline time.Duration
	// Interval between two evaluations of the gates.
	Interval time.Duration
	// MinDuration is the least time validating lasts, even when every gate
	// passes earlier.
	MinDuration time.Duration
	// FailureLimit is how many consecutive failing evaluations of one gate
	// fail the deployment (minimum 1).
	FailureLimit int
	// PostPromotionWindow holds the new live pool to the gates for this
	// long after the promotion; a failure rolls back. Zero: no window.
	PostPromotionWindow time.Duration
}

// Settings are the rollout parameters from the configuration.
type Settings struct {
	// MinReady is how many replicas must be healthy (and warmed) for a
	// pool to count as ready; 0 means all of them.
	MinReady         int
	ProgressDeadline time.Duration
	AutoPromote      bool
	AutoPromoteAfter time.Duration
	Retention        time.Duration
	DrainTimeout     time.Duration
	Warmup           []WarmupRequest
	WarmupTimeout    time.Duration
	// Rise and Fall are the health thresholds used by warming's checks.
	Rise, Fall int
	// RetentionMode is rollout.retention_mode: RetentionKeep ("" too),
	// RetentionSleep (see sleep.go), RetentionShrink (see shrink.go) or
	// RetentionStop (see launch.go).
	RetentionMode string
	// ShrinkTo is how many replicas of the old pool RetentionShrink keeps
	// (rollout.shrink_to); less than 1 means 1.
	ShrinkTo int
	// WakeTimeout bounds one replica's wake-up before a rollback (on top of
	// ProbeTimeout). Zero means ProbeTimeout alone.
	WakeTimeout time.Duration
	// PreflightTimeout bounds the preflight completions sent right before
	// a switch (rollout.preflight.timeout; see preflight.go). Zero or
	// negative means 5s.
	PreflightTimeout time.Duration
}

// Options configures a Controller.
type Options struct {
	// CheckNew, when set, is handed the replicas a change of the pools
	// added (a deployment here, or one a fleet's watch applied), so that
	// they are checked at once instead of at the next round of checks: a
	// promote right after must not be refused because nobody looked yet.
	// It is called with the controller's lock held and must not block.
	CheckNew func([]*pool.Replica)
	Store    store.Store
	Applier  Applier
	Prober   Prober
	// Preflight sends one real completion to each healthy replica of the
	// pool about to go live, right before a promote or rollback (see
	// preflight.go); a pool that does not answer enough of them is
	// refused. Nil: no preflight (the gateway always sets one).
	Preflight Preflighter
	// Pools are blue and green as configured. A deployment overrides a
	// pool's spec in the persisted state.
	Pools map[string]PoolSpec
	// ModelName is the client-facing model name, "" for pass-through.
	ModelName string
	// InitialLive is the live pool when the store is empty.
	InitialLive string
	// ProbeTimeout bounds the checks made before a switch and in warming.
	ProbeTimeout time.Duration
	// WakeStragglerGrace is how long a rollback in retention_mode sleep
	// waits for the retained pool's other replicas once the first woke,
	// on top of twice that first wake's time (see wakeRetained). Zero
	// means 10s.
	WakeStragglerGrace time.Duration
	Settings           Settings
	// Validator runs validation; nil means no validation at all.
	Validator Validator
	// Validation configures it.
	Validation ValidationSettings
	// Canary configures the canary strategy; no steps means blue-green.
	Canary CanarySettings
	// Hooks maps an event (hook.Events) to its hooks.
	Hooks map[string][]hook.Spec
	// OthersInFlight, when set (a fleet), returns the requests in flight
	// on the pool at the fleet's other gateways, as they last reported:
	// the retirement's drain waits for them as for this gateway's own.
	OthersInFlight func(pool string) int
	// EngineBusy, when set (a driver: clients reach the replicas through
	// nginx or HAProxy, not this process), returns the requests the
	// pool's replicas' engines hold, running and waiting, as their
	// metrics say: the retirement's drain waits for them as for this
	// gateway's own. An error (metrics that cannot be read) makes the
	// drain wait until rollout.drain_timeout, as it cannot tell.
	EngineBusy func(ctx context.Context, p *pool.Pool) (int, error)
	// Launcher starts replicas through the agents for a deployment given
	// none, and stops them at retirement (see launch.go). Nil: every
	// deployment names its replicas.
	Launcher Launcher
	// Agents returns the agents as last checked (up or down, their
	// replicas); nil without agents. A promote onto replicas started
	// through an agent that is down, or that no longer lists them
	// running, is refused (see View.canSee).
	Agents func() []api.AgentStatus
	// GatewayQueue returns a pool's gateway queue counts (the llm
	// balancer's), false when it has none. Nil: none.
	GatewayQueue func(pool string) (api.GatewayQueue, bool)
	// Shadow returns the shadow mirror's counters for the status; nil
	// without shadow traffic.
	Shadow func() *api.ShadowStatus
	// Self finds replica URLs that lead back to the gateway's own
	// listeners: a deploy naming one is refused (400 bad_replica), and
	// the preflight fails such a replica without sending it anything. Nil:
	// no such check.
	Self *selfaddr.Checker
	// HookRunner runs hooks. Nil means &hook.Runner{}.
	HookRunner HookRunner
	// HTTP sends warm-up requests. Nil means a default client.
	HTTP *http.Client
	// ReadKey reads a pool's API key file (PoolSpec.APIKeyFile). Nil
	// means secret.ReadFile.
	ReadKey func(file string) (string, error)
	// KeyDirs are the directories (admin.api_key_dirs) under which a
	// deploy may name a key file of its own; besides them it may name
	// only a file a configured pool names. Nil: only those.
	KeyDirs []string
	// Tick is the reconcile period of Run. Zero means 1s.
	Tick time.Duration
	// Logger receives one line per transition. Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Tracer records admin calls and transitions as spans (trace.go). Nil
	// records nothing.
	Tracer Tracer
	// Gateway is this gateway's name in a fleet; "" for a gateway alone.
	// Hooks it records as running carry it, and Start ends only its own
	// leftovers (another gateway's hook runs on another machine, or is
	// still running under a live leader).
	Gateway string
}

// Controller owns the live pool and the deployments.
//
// Transitions are serialised by tmu and persisted before they are applied.
// Readers (status, health checks, the data plane's tables) take mu only
// briefly, so a long transition (a before_promote hook) never blocks them.
type Controller struct {
	// promoting is the promote running its before_promote hooks and
	// preflight (nil when none): an abort meanwhile stops it (see Abort).
	promoting atomic.Pointer[promoteRun]

	opts  Options
	log   *slog.Logger
	now   func() time.Time
	hooks HookRunner
	http  *http.Client
	kick  chan struct{}
	warm  *warmer

	tmu sync.Mutex // serialises transitions
	amu sync.Mutex // serialises apply, so the last table applied is built from the latest state

	hookRuns sync.Map // [2]string{event, ok|failed} -> *atomic.Uint64

	mu    sync.Mutex // guards the fields below
	st    State
	rev   int64
	pools map[string]*pool.Pool
	notes map[string]string // deployment id -> why it is waiting (not persisted)
	val   valState          // the validation window in progress (not persisted)
	// saveErr is the last failed write of the state, since when writes
	// fail; nil once one succeeds.
	saveErr *api.SaveError
	// saveErrEvents reports that the failed write carried events (a
	// transition): a later write without any (bookkeeping, smaller) that
	// succeeds does not mean the state is saved again.
	saveErrEvents bool
	// autoRetry backs off refused auto-promotions, per deployment.
	autoRetry map[string]retry
	// orphanRetry backs off stopping State.Orphans; released are the
	// launched replicas just stopped (orphans.go).
	orphanRetry retry
	released    map[string]bool

	sleep sleepTracker // retention_mode: sleep; see sleep.go

	shrinks shrinkTracker // retention_mode: shrink; see shrink.go

	launch launchTracker // a deploy launching replicas; see launch.go

	// configured are the pools as the configuration has them (Options.Pools
	// until SetPools); a pool the state has no spec for is served from it.
	configured atomic.Pointer[map[string]PoolSpec]
	// specs are the hooks per event (Options.Hooks until SetHooks).
	specs atomic.Pointer[map[string][]hook.Spec]
}

// retry is when to try again, after how many tries.
type retry struct {
	at    time.Time
	tries int
}

// New returns a controller; call Start before anything else.
func New(opts Options) (*Controller, error) {
	c := &Controller{opts: opts, log: opts.Logger, now: opts.Now, hooks: opts.HookRunner, http: opts.HTTP,
		kick: make(chan struct{}, 1), pools: map[string]*pool.Pool{}, notes: map[string]string{}, autoRetry: map[string]retry{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hooks == nil {
		c.hooks = &hook.Runner{}
	}
	if opts.Tracer != nil {
		c.hooks = tracedHooks{HookRunner: c.hooks, t: opts.Tracer}
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.opts.ProbeTimeout <= 0 {
		c.opts.ProbeTimeout = 5 * time.Second
	}
	if c.opts.Tick <= 0 {
		c.opts.Tick = time.Second
	}
	s := &c.opts.Settings
	if s.ProgressDeadline <= 0 {
		s.ProgressDeadline = 30 * time.Minute
	}
	if s.WarmupTimeout <= 0 {
		s.WarmupTimeout = 5 * time.Minute
	}
	s.Rise, s.Fall = max(s.Rise, 1), max(s.Fall, 1)
	if s.PreflightTimeout <= 0 {
		s.PreflightTimeout = 5 * time.Second
	}
	c.warm = newWarmer()
	v := &c.opts.Validation
	if v.Interval <= 0 {
		v.Interval = 5 * time.Second
	}
	if v.Deadline <= 0 {
		v.Deadline = 10 * time.Minute
	}
	v.FailureLimit = max(v.FailureLimit, 1)
	if c.opts.Validator == nil {
		v.Enabled, v.PostPromotionWindow = false, 0
	}
	if _, ok := opts.Pools[opts.InitialLive]; !ok {
		return nil, fmt.Errorf("initial live pool %q is not configured", opts.InitialLive)
	}
	pools, hooks := maps.Clone(opts.Pools), maps.Clone(opts.Hooks)
	c.configured.Store(&pools)
	c.specs.Store(&hooks)
	return c, nil
}

// Start loads the persisted state (or writes the initial one) and applies
// it to the data plane. After a restart, even after kill -9, the persisted
// live pool, pools and deployments win over the configuration.
func (c *Controller) Start(ctx context.Context) error {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	rec, err := c.opts.Store.Get(ctx)
	if err != nil {
		return err
	}
	if rec.Revision == 0 {
		return c.commit(ctx, "controller", func(s *State) ([]event, error) {
			s.Live = c.opts.InitialLive
			return []event{{Action: "init", To: s.Live, Reason: "first start: live pool from config"}}, nil
		})
	}
	st, err := usableState(rec.Data, func(name string) bool { _, ok := c.opts.Pools[name]; return ok })
	if err != nil {
		// As a damaged file is reported: never a silent fresh start, and
		// where to look.
		return fmt.Errorf("the persisted state (revision %d) is damaged: %w (cutover will not start afresh over it: restore the last good copy, see `cutover state check` and docs/operations.md)", rec.Revision, err)
	}
	c.mu.Lock()
	c.st, c.rev = st, rec.Revision
	c.pinRetainedLocked()
	if err := poolsConflict(st, rec.Revision, c.configuredPools()); err != nil {
		c.mu.Unlock()
		return err
	}
	c.rebuildPoolsLocked()
	c.mu.Unlock()
	if err := c.apply(ctx); err != nil {
		return fmt.Errorf("apply the persisted state (live %s, revision %d): %w", st.Live, rec.Revision, err)
	}
	for name, spec := range st.Pools {
		if cfg := c.opts.Pools[name]; !cfg.equal(spec) && spec.SetBy != "" {
			c.log.Info("pool spec from the state wins over the config", "pool", name, "set_by", spec.SetBy, "model", spec.Model, "replicas", spec.Replicas)
		}
	}
	if st.Live != c.opts.InitialLive {
		c.log.Warn("the config's live pool differs from the persisted one; the state wins (promote or rollback to change it)",
			"config_live", c.opts.InitialLive, "live", st.Live, "revision", rec.Revision)
	}
	if err := c.endLeftoverHooks(ctx); err != nil {
		return fmt.Errorf("end hooks left running before the restart: %w", err)
	}
	msg := []any{"live", st.Live, "revision", rec.Revision}
	if d := st.active(); d != nil {
		msg = append(msg, "deployment", d.ID, "phase", d.Phase)
		if !d.Deadline.IsZero() { // ready waits for a promote: no deadline
			msg = append(msg, "deadline", d.Deadline)
		}
	}
	c.log.Info("state restored", msg...)
	return nil
}

// commit applies fn to a copy of the state, persists the result as the
// next revision together with fn's history events, and makes it current.
// The caller holds tmu. It applies the new routing table when the live
// pool or a pool's spec changed.
func (c *Controller) commit(ctx context.Context, actor string, fn func(*State) ([]event, error)) error {
	c.mu.Lock()
	cur, next, rev := c.st, c.st.clone(), c.rev
	c.mu.Unlock()
	evs, err := fn(&next)
	if err != nil {
		return err
	}
	c.keepOrphans(&cur, &next)
	c.account(&next, c.now().UTC())
	for i := range evs {
		if d := next.find(evs[i].Deployment); d != nil && evs[i].To != "" {
			evs[i].Cost = deploymentCost(d)
		}
	}
	if len(evs) > 0 {
		next.GuardRevision = rev + 1
	}
	data, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	now := c.now().UTC()
	raw := make([][]byte, len(evs))
	for i := range evs {
		evs[i].Time, evs[i].Revision = now, rev+1
		if evs[i].Actor == "" {
			evs[i].Actor = actor
		}
		if raw[i], err = json.Marshal(evs[i]); err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
	}
	if err := c.opts.Store.Put(ctx, rev, data, raw...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			if rerr := c.reload(ctx); rerr != nil && !errors.Is(rerr, store.ErrUnavailable) {
				// Retrying would meet the same state: say what is wrong.
				return &Refusal{Code: "state_unusable", Status: http.StatusServiceUnavailable,
					Reason: fmt.Sprintf("nothing changed: the state the store holds now cannot be used: %v", rerr)}
			}
			return refuse("conflict", "the state changed concurrently (%v); check status and retry", err)
		}
		if ctx.Err() == nil && actor == "controller" { // an admin call's caller gets the error
			c.mu.Lock()
			if c.saveErr == nil {
				c.saveErr = &api.SaveError{Since: now}
			}
			c.saveErr.Error = err.Error()
			c.saveErrEvents = c.saveErrEvents || len(evs) > 0
			c.mu.Unlock()
		}
		return err
	}
	// The transition is on record: it is carried through (or undone and
	// recorded as undone) whatever happens to the caller, an admin client
	// that hangs up or a reconcile loop that is stopping.
	ctx = context.WithoutCancel(ctx)
	c.mu.Lock()
	if len(evs) > 0 || !c.saveErrEvents {
		c.saveErr, c.saveErrEvents = nil, false
	}
	prev := c.st
	if c.rev <= rev+1 { // else Follow already took a newer revision (another gateway's)
		c.st, c.rev = next, rev+1
	}
	c.rebuildPoolsLocked()
	c.mu.Unlock()
	for _, e := range evs {
		attrs := []any{"action", e.Action, "revision", e.Revision, "actor", e.Actor}
		for _, kv := range [][2]string{{"deployment", e.Deployment}, {"from", e.From}, {"to", e.To}, {"reason", e.Reason}} {
			if kv[1] != "" {
				attrs = append(attrs, kv[0], kv[1])
			}
		}
		if e.Hook != nil {
			attrs = append(attrs, "hook", e.Hook.Hook, "ok", e.Hook.OK, "duration_ms", e.Hook.DurationMS)
		}
		c.log.Info("transition", attrs...)
	}
	c.traceEvents(ctx, evs)
	if rev == 0 || routingChanged(&prev, &next) {
		if err := c.apply(ctx); err != nil {
			if rev == 0 {
				// The first start: there is no earlier state to go back
				// to (a zero State names no live pool). Revision 1 stays,
				// which a start applies again once the load balancer
				// takes it.
				return fmt.Errorf("the load balancer did not take the first routing table (live %s, revision 1): %w", next.Live, err)
			}
			return c.revert(ctx, prev, rev+1, evs, err)
		}
	}
	return nil
}

// revert undoes revision failed, whose routing table could not be applied:
// it persists the previous state again (so the record never disagrees with
// what serves traffic) and re-applies it.
func (c *Controller) revert(ctx context.Context, prev State, failed int64, evs []event, cause error) error {
	c.log.Error("routing change failed; reverting", "revision", failed, "error", cause)
	// Ids given out stay given: a deploy undone here is in the history
	// under its id, which no later deployment may take.
	prev.NextID = max(prev.NextID, c.st.NextID)
	data, err := json.Marshal(prev)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	undone := event{Time: c.now().UTC(), Revision: failed + 1, Actor: "controller", Action: "apply_failed",
		From: c.st.Live, To: prev.Live, Reason: fmt.Sprintf("revision %d could not be applied, restored: %v", failed, cause)}
	for _, e := range evs {
		if e.Deployment != "" {
			undone.Deployment = e.Deployment
			undone.Reason = fmt.Sprintf("revision %d (%s of %s) could not be applied, restored: %v", failed, e.Action, e.Deployment, cause)
			break
		}
	}
	ev, _ := json.Marshal(undone)
	if err := c.opts.Store.Put(ctx, failed, data, ev); err != nil {
		return fmt.Errorf("revert after failed apply (%v): %w", cause, err)
	}
	c.mu.Lock()
	c.st, c.rev = prev, failed+1
	c.rebuildPoolsLocked()
	c.mu.Unlock()
	if err := c.apply(ctx); err != nil {
		c.log.Error("re-applying the previous routing table failed too", "error", err)
	}
	return &Refusal{Code: "apply_failed", Status: http.StatusBadGateway, Reason: fmt.Sprintf("the load balancer did not take the change; the state is back at %s live: %v", prev.Live, cause)}
}

// routingChanged reports whether the data plane needs a new routing table
// to go from a to b: another live pool, other pools, or another canary
// weight. The controller's commits and a fleet's watch both ask it.
func routingChanged(a, b *State) bool {
	return a.Live != b.Live || !samePools(a.Pools, b.Pools) || canaryChanged(a, b)
}

func samePools(a, b map[string]PoolSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !v.equal(w) {
			return false
		}
	}
	return true
}

// reload takes the store's state after another writer won. It returns
// why it could not: the store is unreachable, went back in time
// (store.ErrBehind), or holds a state that does not decode.
func (c *Controller) reload(ctx context.Context) error {
	rec, err := c.opts.Store.Get(ctx)
	if err != nil {
		return err
	}
	s, err := decodeState(rec.Data)
	if err != nil {
		return fmt.Errorf("state revision %d is damaged (%w): write a good state over it with `cutover state import --replace`", rec.Revision, err)
	}
	c.mu.Lock()
	c.st, c.rev = s, rec.Revision
	c.rebuildPoolsLocked()
	c.mu.Unlock()
	if err := c.apply(ctx); err != nil {
		c.log.Error("apply after reload", "error", err)
	}
	return nil
}

// spec returns the effective spec of pool name: the state's, else the
// configuration's.
func (c *Controller) specLocked(name string) PoolSpec {
	if s, ok := c.st.Pools[name]; ok {
		return s
	}
	return c.configuredPool(name)
}

// configuredPools are the pools as the configuration has them (the pool
// retained for rollback pinned: see pinRetainedLocked).
func (c *Controller) configuredPools() map[string]PoolSpec { return *c.configured.Load() }

// pinRetainedLocked gives the pool a promoted deployment retains for
// rollback, when no deployment set its spec, the model and replicas it
// served at the promotion (the deployment's record) in place of the
// configuration's, when the configuration has it serve another model or
// names a replica another pool holds: a restart during the retention must
// not make a rollback bring back a version nobody promoted away from, as a
// reload does not (SetPools). The same model on other replicas stays the
// file's: the record is the promoting gateway's, and in a fleet each
// gateway serves a pool no deployment set from its own file. Like after
// a reload, the file applies again at the first reload after the
// retention.
func (c *Controller) pinRetainedLocked() {
	held := c.retainedLocked()
	if held == "" {
		return
	}
	d := c.st.active()
	cur := c.configuredPools()
	spec := cur[held]
	if spec.Model == d.FromModel && poolsConflict(c.st, c.rev, map[string]PoolSpec{held: spec}) == nil {
		return
	}
	c.log.Warn("the configuration changes the pool retained for rollback; it keeps what it served until the retention ends",
		"pool", held, "deployment", d.ID, "model", d.FromModel, "replicas", d.FromReplicas, "config_model", spec.Model, "config_replicas", spec.Replicas)
	next := maps.Clone(cur)
	spec.Model, spec.Replicas = d.FromModel, slices.Clone(d.FromReplicas)
	next[held] = spec
	c.configured.Store(&next)
}

// configuredPool is pool name as the configuration has it.
func (c *Controller) configuredPool(name string) PoolSpec { return (*c.configured.Load())[name] }

// rebuildPoolsLocked makes the runtime pools match the effective specs,
// keeping Replica values (and so their health and in-flight counts) for
// URLs that stay. New replicas start unhealthy until checked.
func (c *Controller) rebuildPoolsLocked() {
	var fresh []*pool.Replica
	defer func() {
		if len(fresh) > 0 && c.opts.CheckNew != nil {
			c.opts.CheckNew(fresh)
		}
	}()
	for name := range c.opts.Pools {
		spec := c.specLocked(name)
		old := c.pools[name]
		auth := c.authorization(name, spec)
		if old != nil && old.Model == spec.Model && sameURLs(old, spec.Replicas) && sameAuth(old, auth) {
			continue
		}
		p := &pool.Pool{Name: name, Model: spec.Model}
		for _, raw := range spec.Replicas {
			var r, rekeyed *pool.Replica
			if old != nil {
				for _, o := range old.Replicas {
					switch {
					case o.Name == raw && o.Authorization == auth:
						r = o
					case o.Name == raw:
						rekeyed = o
					}
				}
			}
			if r == nil {
				u, err := url.Parse(raw)
				if err != nil {
					c.log.Error("skipping replica with a bad URL", "pool", name, "replica", raw, "error", err)
					continue
				}
				r = pool.NewReplica(u)
				r.Authorization = auth
				if old != nil { // a change after start: checked at once
					// Not checked yet; a replica that only got a new key
					// keeps serving meanwhile (a key file reloaded).
					if rekeyed == nil || !rekeyed.Healthy() {
						r.SetInitial(c.now(), errNotChecked)
					}
					fresh = append(fresh, r)
				}
			}
			p.Replicas = append(p.Replicas, r)
		}
		c.pools[name] = p
	}
}

var errNotChecked = errors.New("not checked yet")

// authorization is the Authorization header value for pool name's
// replicas under spec: Bearer and the key from the spec's key file, else
// from the configured pool's; "" without a key. A file that cannot be read
// is logged (by name, never its contents) and leaves the replicas without
// a key, so their health checks say 401.
func (c *Controller) authorization(name string, spec PoolSpec) string {
	file := cmp.Or(spec.APIKeyFile, c.configuredPool(name).APIKeyFile)
	if file == "" {
		return ""
	}
	key, err := c.readKey(file)
	if err != nil {
		c.log.Error("pool API key unreadable: its replicas get no Authorization", "pool", name, "error", err)
		return ""
	}
	return secret.Bearer(key)
}

// readKey reads an API key file through Options.ReadKey.
func (c *Controller) readKey(file string) (string, error) {
	if c.opts.ReadKey != nil {
		return c.opts.ReadKey(file)
	}
	return secret.ReadFile(file)
}

// sameAuth reports whether p's replicas carry auth.
func sameAuth(p *pool.Pool, auth string) bool {
	for _, r := range p.Replicas {
		if r.Authorization != auth {
			return false
		}
	}
	return true
}

func sameURLs(p *pool.Pool, urls []string) bool {
	if len(p.Replicas) != len(urls) {
		return false
	}
	for i, r := range p.Replicas {
		if r.Name != urls[i] {
			return false
		}
	}
	return true
}

// apply hands the data plane a table for the current state.
func (c *Controller) apply(ctx context.Context) error {
	c.amu.Lock()
	defer c.amu.Unlock()
	c.mu.Lock()
	ps := make([]*pool.Pool, 0, len(c.pools))
	for _, name := range slices.Sorted(maps.Keys(c.pools)) {
		ps = append(ps, c.pools[name])
	}
	t := route.New(c.rev, c.st.Live, c.opts.ModelName, ps...)
	c.canaryRouteLocked(t)
	if name := c.sleepingPoolLocked(); name != "" {
		t.MarkSleeping(name)
	}
	c.mu.Unlock()
	return c.opts.Applier.Apply(ctx, t)
}

// Targets lists every replica with the model it must serve, for the
// health checker. It follows deployments as they change the pools.
func (c *Controller) Targets() []pool.Target {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ts []pool.Target
	for _, name := range slices.Sorted(maps.Keys(c.pools)) {
		p := c.pools[name]
		for _, r := range p.Replicas {
			ts = append(ts, pool.Target{Replica: r, Model: p.Model})
		}
	}
	return ts
}

// Pool returns the runtime pool name, or nil.
func (c *Controller) Pool(name string) *pool.Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pools[name]
}

// snapshot returns a copy of the state and the runtime pools.
func (c *Controller) snapshot() (State, int64, map[string]*pool.Pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.clone(), c.rev, maps.Clone(c.pools)
}

func (c *Controller) setNote(id, note string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if note == "" {
		delete(c.notes, id)
	} else {
		c.notes[id] = note
	}
}

// poke makes Run reconcile now instead of at its next tick.
func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// need is how many healthy replicas pool p must have to count as ready.
func (c *Controller) need(p *pool.Pool) int {
	if n := c.opts.Settings.MinReady; n > 0 {
		return min(n, max(len(p.Replicas), 1))
	}
	return max(len(p.Replicas), 1)
}

// countHook counts one hook run for the metrics.
func (c *Controller) countHook(o hook.Outcome) {
	outcome := "ok"
	if !o.OK {
		outcome = "failed"
	}
	v, _ := c.hookRuns.LoadOrStore([2]string{o.Event, outcome}, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// HookRuns counts hook runs by event and outcome since start.
func (c *Controller) HookRuns() map[[2]string]uint64 {
	out := map[[2]string]uint64{}
	c.hookRuns.Range(func(k, v any) bool {
		out[k.([2]string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}
