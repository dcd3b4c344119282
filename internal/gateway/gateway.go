// Package gateway assembles one cutover process from a configuration: the
// state store, the pools and their health checks, the control plane, the
// data plane and the admin API, with their listeners and shutdown.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/errconn"
	"github.com/cutover-dev/cutover/internal/fleet"
	"github.com/cutover-dev/cutover/internal/metrics"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/route"
	"github.com/cutover-dev/cutover/internal/selfaddr"
	"github.com/cutover-dev/cutover/internal/shadow"
	"github.com/cutover-dev/cutover/internal/store"
	"github.com/cutover-dev/cutover/internal/tracing"
	"github.com/cutover-dev/cutover/internal/validation"
)

// Gateway is a running cutover: call New, then Run.
type Gateway struct {
	cfg     *config.Config
	log     *slog.Logger
	store   store.Store
	checker *pool.Checker
	outlier *pool.Outlier
	proxy   *proxy.Handler
	ctrl    *rollout.Controller
	agents  *agentLauncher // nil without agents (launch.go, agents.go)
	lb      lbDriver       // external load balancer (driver.go); nil for builtin
	metrics *metrics.Metrics
	history *metrics.History // the last hour of traffic, for the dashboard
	// observers receive every request's observation; set before serving.
	observers []proxy.Observer

	mirror *shadow.Mirror // nil without shadow traffic
	tls    *tlsSetup      // listeners' certificates and the replica CAs
	fleet  *fleetParts    // etcd store and fleet membership; nil without etcd (fleet.go)

	trafficLn, adminLn, previewLn net.Listener
	stopCheckNew                  context.CancelFunc // ends the checks of replicas a pool change added
	trafficSrv, previewSrv        *proxy.Server
	adminSrv                      *http.Server

	reload reloader // SIGHUP and POST /api/v1/reload (reload.go)
	// drain is proxy.drain_timeout (a time.Duration), which a reload
	// changes.
	drain atomic.Int64

	tracer    *tracing.Provider // nil without tracing (trace.go)
	ownTracer bool              // New built tracer: closeAll flushes and stops it
}

// Option changes how New assembles a gateway. Tests use them to take
// control of time and of the validation's measurements.
type Option func(*options)

// options are what Option sets; the zero value is the real clock and
// samples as measured.
type options struct {
	now        func() time.Time
	adjust     func(pool string, s *validation.Sample)
	configFile string            // reload.go
	level      *slog.LevelVar    // reload.go
	tracer     *tracing.Provider // trace.go
	// shadowHelper is the helper process that sends shadow copies (see
	// shadow.Options.Helper); nil: the gateway sends them itself.
	shadowHelper []string
}

// WithClock makes the control plane read the time from now (deadlines,
// retention, validation intervals, back-offs) instead of time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSampleAdjust hands every validation sample to adjust before it is
// recorded (see validation.Validator.Adjust).
func WithSampleAdjust(adjust func(pool string, s *validation.Sample)) Option {
	return func(o *options) { o.adjust = adjust }
}

// WithShadowHelper has shadow copies sent by the helper process started
// with argv (cutover shadow-helper), at idle CPU priority, instead of by
// the gateway's own process (see shadow.Options.Helper).
func WithShadowHelper(argv []string) Option { return func(o *options) { o.shadowHelper = argv } }

// New binds the listeners, opens the store, checks every replica once and
// restores the live pool. It does not serve yet: call Run. On error
// everything opened is closed again.
func New(ctx context.Context, cfg *config.Config, token string, log *slog.Logger, opts ...Option) (_ *Gateway, err error) {
	if log == nil {
		log = slog.Default()
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	g := &Gateway{cfg: cfg, log: log, reload: reloader{file: o.configFile, applied: cfg}}
	g.drain.Store(int64(cfg.Proxy.DrainTimeout.D()))
	if o.level != nil {
		g.reload.level, g.reload.flagLevel = o.level, o.level.Level()
		g.setLogLevel(cfg)
	}
	defer func() {
		if err != nil {
			g.closeAll() // g, not the nil result: regression for a panic on a busy port
		}
	}()
	// Files named by the config are read before anything is opened, so a
	// bad one changes nothing.
	pre, err := prepare(cfg, token)
	if err != nil {
		return nil, err
	}
	picker, specs, keys, readToken := pre.picker, pre.specs, pre.keys, pre.readToken
	g.tls = pre.tls
	if err := g.setupTracing(ctx, cfg, o.tracer); err != nil {
		return nil, err
	}
	// Bind every listener before anything is persisted or applied: a start
	// that fails on a busy port leaves the state (and any load balancer)
	// as it found them.
	if g.trafficLn, err = listen(cfg.Listen, g.tls.traffic); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if g.adminLn, err = listen(cfg.Admin.Listen, g.tls.admin); err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	if cfg.Preview.Listen != "" {
		if g.previewLn, err = listen(cfg.Preview.Listen, g.tls.preview); err != nil {
			return nil, fmt.Errorf("preview.listen: %w", err)
		}
	}
	// Set g.store only on success: a nil *Bolt in the interface would look
	// open to closeAll.
	st, err := g.openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	g.store = st
	checkClient := &http.Client{Transport: g.tls.transport(0, 0)}
	g.checker = &pool.Checker{
		Client:   checkClient,
		Path:     cfg.Health.Path,
		Interval: cfg.Health.Interval.D(),
		Timeout:  cfg.Health.Timeout.D(),
		Rise:     cfg.Health.Rise,
		Fall:     cfg.Health.Fall,
		Logger:   log,
	}
	var mirror *shadow.Mirror
	if cfg.Validation.Shadow.Percent > 0 {
		sh := cfg.Validation.Shadow
		mirror = shadow.New(shadow.Options{Percent: sh.Percent, MaxBodyBytes: sh.MaxBodyBytes, Queue: sh.Queue,
			Concurrency: sh.Concurrency, Timeout: sh.Timeout.D(), HTTP: &http.Client{Transport: g.tls.transport(0, 0)},
			Upstream: &proxy.Upstream{}, Logger: log, Resolve: func(name string) *pool.Pool { return g.ctrl.Pool(name) },
			Helper: shadowHelper(sh.Priority, o.shadowHelper)})
		g.mirror = mirror
	}
	oc := cfg.Health.Outlier
	g.outlier = &pool.Outlier{Consecutive5xx: oc.Consecutive5xx, FailureRate: oc.FailureRate, Interval: oc.Interval.D(),
		MinimumRequests: oc.MinimumRequests, BaseEjectionTime: oc.BaseEjectionTime.D(), MaxEjectionTime: oc.MaxEjectionTime.D(),
		MaxEjectionPercent: oc.MaxEjectionPercent, Logger: log,
		Resolve: func(name string) *pool.Pool {
			if g.ctrl == nil {
				return nil
			}
			return g.ctrl.Pool(name)
		}}
	g.reload.picker, g.reload.poolKeys, g.reload.dial = picker, pre.poolKeys, dialSettingsOf(cfg)
	g.reload.keys.Store(keys)
	popts, err := g.proxyOptions(cfg, g.proxyTransport(g.reload.dial), keys)
	if err != nil {
		return nil, err
	}
	g.reload.poolToken = popts.PoolHeaderToken
	g.proxy = proxy.New(popts)
	applier, err := g.newApplier(cfg)
	if err != nil {
		return nil, err
	}
	var validator rollout.Validator
	if cfg.Validation.Enabled() || cfg.Validation.PostPromotion > 0 || cfg.Rollout.CanaryStrategy() {
		syn, err := g.syntheticFunc(cfg)
		if err != nil {
			return nil, err
		}
		vm := mirror
		if cfg.Etcd != nil {
			vm = nil // in a fleet every gateway's recorder drives its mirror (fleet_samples.go)
		}
		v := validation.NewValidator(validation.GatesFromConfig(cfg.Validation.Gates), vm, syn)
		v.Adjust = o.adjust
		g.observers = append(g.observers, v)
		validator = v
		g.reload.validator = v
	}
	ro := cfg.Rollout
	warm := make([]rollout.WarmupRequest, len(ro.Warmup.Requests))
	for i, w := range ro.Warmup.Requests {
		warm[i] = rollout.WarmupRequest{Prompt: w.Prompt, Stream: w.Stream, MaxTokens: w.MaxTokens}
	}
	agents, err := newLauncher(cfg, log)
	if err != nil {
		return nil, err
	}
	var launcher rollout.Launcher
	var agentStates func() []api.AgentStatus
	if agents != nil {
		g.agents, launcher, agentStates = agents, agents, agents.Agents
	}
	checkNewCtx, stopCheckNew := context.WithCancel(context.Background())
	g.stopCheckNew = stopCheckNew
	g.ctrl, err = rollout.New(rollout.Options{
		CheckNew:       func(rs []*pool.Replica) { go g.checker.CheckNew(checkNewCtx, rs) },
		Launcher:       launcher,
		OthersInFlight: g.othersInFlight,
		EngineBusy:     g.engineBusy(),
		Agents:         agentStates,
		GatewayQueue:   gatewayQueue(picker),
		Shadow:         shadowStatus(mirror),
		Self:           g.self(),
		Store:          g.store,
		Applier:        applier,
		Prober:         g.checker,
		Preflight:      &rollout.CompletionPreflight{HTTP: &http.Client{Transport: g.tls.transport(0, 0)}},
		Pools:          specs,
		ModelName:      cfg.ModelName,
		InitialLive:    cfg.Live,
		ProbeTimeout:   cfg.Health.Timeout.D(),
		KeyDirs:        cfg.Admin.APIKeyDirs,
		Settings: rollout.Settings{
			MinReady:         ro.MinReady,
			ProgressDeadline: ro.ProgressDeadline.D(),
			AutoPromote:      ro.AutoPromote,
			AutoPromoteAfter: ro.AutoPromoteAfter.D(),
			Retention:        ro.Retention.D(),
			RetentionMode:    ro.RetentionMode,
			ShrinkTo:         ro.KeptWhenShrunk(),
			WakeTimeout:      ro.WakeTimeout.D(),
			PreflightTimeout: ro.Preflight.Timeout.D(),
			DrainTimeout:     ro.DrainTimeout.D(),
			Warmup:           warm,
			WarmupTimeout:    ro.Warmup.Timeout.D(),
			Rise:             cfg.Health.Rise,
			Fall:             cfg.Health.Fall,
		},
		Validator: validator,
		Validation: rollout.ValidationSettings{
			Enabled:             cfg.Validation.Enabled(),
			Deadline:            cfg.Validation.Deadline.D(),
			Interval:            cfg.Validation.Interval.D(),
			MinDuration:         cfg.Validation.MinDuration.D(),
			FailureLimit:        cfg.Validation.FailureLimit,
			PostPromotionWindow: cfg.Validation.PostPromotion.D(),
		},
		Canary: canarySettings(ro),
		Hooks:  cfg.HookSpecs(),
		HTTP:   &http.Client{Transport: g.tls.transport(0, 0)},
		Tick:   min(time.Second, cfg.Health.Interval.D()),
		Logger: log,
		Now:    o.now,

		Gateway: fleetName(cfg),
		Tracer:  g.controlTracer(),
	})
	if err != nil {
		return nil, err
	}
	g.checker.Targets = g.ctrl.Targets
	// Check every replica once before serving, so traffic starts from the
	// truth; then restore the state (which may add deployed replicas).
	if err := g.startController(ctx); err != nil {
		return nil, err
	}
	g.checker.Initial(ctx)
	adm, err := admin.New(g.adminController(), token, log)
	if err != nil {
		return nil, err
	}
	if readToken != "" {
		if err := adm.SetReadToken(readToken); err != nil {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "admin.read_token_file", Msg: err.Error()}}}
		}
	}
	g.reload.admin, g.reload.token, g.reload.readToken = adm, token, readToken
	g.metrics = metrics.New(g.ctrl)
	g.observers = append(g.observers, g.metrics)
	g.outlier.OnEject, g.outlier.OnOverflow = g.metrics.OutlierEjected, g.metrics.OutlierOverflow // before any request
	if g.mirror != nil {
		g.metrics.RegisterShadow(g.mirror)
	}
	g.metrics.RegisterClientAuthFunc(g.reload.keys.Load) // none while client auth is off
	g.metrics.RegisterBufferedBytes(g.proxy.BufferedBytes)
	if g.fleet != nil {
		if err := fleet.CheckName(ctx, g.fleet.etcd, cfg.FleetName(), "", g.AdminAddr(), log); err != nil {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "name", Msg: err.Error()}}}
		}
	}
	g.setFleetDigest(cfg)
	g.joinFleet()
	adm.Handle("GET /metrics", g.metrics.Handler())
	g.history = metrics.NewHistory(nil, config.PoolNames...)
	g.observers = append(g.observers, g.history)
	adm.HandleJSON("POST /api/v1/reload", g.handleReload)
	adm.HandleJSON("GET /api/v1/reload", g.handleLastReload)
	adm.HandleJSON("GET /api/v1/traffic", func(*http.Request) (any, error) { return g.history.Snapshot(), nil })
	adm.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	adm.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	adm.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	g.trafficSrv = &proxy.Server{Handler: g.proxy, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog,
		OnFallback: g.metrics.Fallback}
	g.adminSrv = admin.NewHTTPServer(g.continueTrace(adm), errLog)
	if g.previewLn != nil {
		// Through proxy.Server for the same raw-byte framing checks as
		// the traffic listener; every connection goes to net/http there.
		g.previewSrv = &proxy.Server{Handler: g.proxy, Route: preview{g.proxy}, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
	}
	return g, nil
}

// self is the check that a replica is not one of the gateway's own
// listeners, as bound.
func (g *Gateway) self() *selfaddr.Checker {
	ls := []selfaddr.Listener{
		{Role: "listen", Addr: g.trafficLn.Addr().String()},
		{Role: "admin.listen", Addr: g.adminLn.Addr().String()},
	}
	if g.previewLn != nil {
		ls = append(ls, selfaddr.Listener{Role: "preview.listen", Addr: g.previewLn.Addr().String()})
	}
	return selfaddr.New(ls...)
}

// TrafficAddr is the address client traffic is served on.
func (g *Gateway) TrafficAddr() string { return g.trafficLn.Addr().String() }

// AdminAddr is the address of the admin API.
func (g *Gateway) AdminAddr() string { return g.adminLn.Addr().String() }

// PreviewAddr is the preview listener's address, "" without one.
func (g *Gateway) PreviewAddr() string {
	if g.previewLn == nil {
		return ""
	}
	return g.previewLn.Addr().String()
}

// Mirror is the shadow mirror, nil without shadow traffic.
func (g *Gateway) Mirror() *shadow.Mirror { return g.mirror }

// Controller is the control plane, for in-process callers such as tests.
func (g *Gateway) Controller() *rollout.Controller { return g.ctrl }

// Checker is the health checker; tests call its Tick.
func (g *Gateway) Checker() *pool.Checker { return g.checker }

// Run serves until ctx is done, then stops accepting, lets in-flight
// requests and streams finish for up to proxy.drain_timeout, and closes
// everything. It returns nil after a clean drain.
func (g *Gateway) Run(ctx context.Context) error {
	hctx, stopChecks := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { g.checker.Run(hctx) })
	wg.Go(func() { g.outlier.Run(hctx) })
	wg.Go(func() { g.runScraper(hctx) })
	wg.Go(func() { g.runControl(hctx) })
	wg.Go(func() { g.runDriver(hctx) })
	if g.agents != nil {
		wg.Go(func() { g.agents.runWatch(hctx) })
	}
	hup, stopHUP := g.notifyHUP()
	defer stopHUP()
	wg.Go(func() { g.runTLS(hctx, hup) })
	errc := make(chan error, 3)
	serve := func(name string, srv interface{ Serve(net.Listener) error }, ln net.Listener) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s server: %w", name, err)
		}
	}
	wg.Go(func() { serve("traffic", g.trafficSrv, g.trafficLn) })
	adminLn := g.adminLn
	if g.tls.admin == nil {
		// net/http's own answers to unreadable requests in the error
		// shape, like every other admin API error (not under TLS: net/http
		// must see its *tls.Conn).
		adminLn = errconn.Listener(adminLn, admin.MalformedRequestBody)
	}
	wg.Go(func() { serve("admin", g.adminSrv, adminLn) })
	if g.previewSrv != nil {
		wg.Go(func() { serve("preview", g.previewSrv, g.previewLn) })
	}
	if g.mirror != nil {
		wg.Go(func() { g.mirror.Run(hctx) })
	}
	g.log.Info("cutover serving", "traffic", g.TrafficAddr(), "admin", g.AdminAddr(), "live", g.ctrl.Status().Live)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	drain := time.Duration(g.drain.Load())
	g.log.Info("draining", "in_flight", g.inFlight(), "timeout", drain)
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	var sw sync.WaitGroup
	sw.Go(func() {
		if err := g.trafficSrv.Shutdown(dctx); err != nil {
			g.log.Warn("drain timeout reached: closing remaining connections", "in_flight", g.inFlight())
			_ = g.trafficSrv.Close()
		}
	})
	sw.Go(func() {
		if err := g.adminSrv.Shutdown(dctx); err != nil {
			_ = g.adminSrv.Close()
		}
	})
	if g.previewSrv != nil {
		sw.Go(func() {
			if err := g.previewSrv.Shutdown(dctx); err != nil {
				_ = g.previewSrv.Close()
			}
		})
	}
	sw.Wait()
	stopChecks()
	wg.Wait()
	g.closeAll()
	g.log.Info("stopped")
	return runErr
}

func (g *Gateway) inFlight() int64 {
	var n int64
	for _, p := range g.ctrl.Status().Pools {
		n += p.InFlight
	}
	return n
}

func (g *Gateway) closeAll() {
	if g.stopCheckNew != nil {
		g.stopCheckNew()
	}
	if g.trafficLn != nil {
		_ = g.trafficLn.Close()
	}
	if g.adminLn != nil {
		_ = g.adminLn.Close()
	}
	if g.previewLn != nil {
		_ = g.previewLn.Close()
	}
	if g.store != nil {
		_ = g.store.Close()
		g.store = nil
	}
	g.stopTracing()
}

// builtin applies routing tables to the gateway's own proxy: an atomic
// pointer swap that cannot fail.
type builtin struct{ h *proxy.Handler }

func (b builtin) Apply(_ context.Context, t *route.Table) error {
	b.h.Apply(t)
	return nil
}

// observers fans one observation out to several observers. It reads the
// slice through a pointer so that observers added during New (after the
// proxy was built, before serving) are seen.
type observers struct{ list *[]proxy.Observer }

func (o observers) Observe(obs *proxy.Observation) {
	for _, x := range *o.list {
		x.Observe(obs)
	}
}

// shadowHelper is the shadow helper's command line for the configured
// priority: argv for idle, none (copies sent by the gateway) for normal.
func shadowHelper(priority string, argv []string) []string {
	if priority != config.ShadowPriorityIdle {
		return nil
	}
	return argv
}

// shadowStatus returns the status's view of m's counters; nil without a
// mirror.
func shadowStatus(m *shadow.Mirror) func() *api.ShadowStatus {
	if m == nil {
		return nil
	}
	return func() *api.ShadowStatus {
		s := m.Stats()
		return &api.ShadowStatus{Sent: s.Sent, Dropped: s.Dropped, Oversize: s.Oversize, Failed: s.Failed, Mismatched: s.Mismatched}
	}
}

// mirrorOrNil keeps a nil *shadow.Mirror from becoming a non-nil
// proxy.Mirror interface.
func mirrorOrNil(m *shadow.Mirror) proxy.Mirror {
	if m == nil {
		return nil
	}
	return m
}

// preview serves the preview listener: every request goes to the standby
// (candidate) pool of the current table.
type preview struct{ h *proxy.Handler }

func (p preview) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := p.h.Table()
	if t == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	for name, e := range t.Pools {
		if name != t.Live.Pool.Name {
			if e.Sleeping != nil {
				e = e.Sleeping // the retained pool asleep: 503, not a sleeping replica
			}
			p.h.ServePool(w, r, t, e)
			return
		}
	}
}
