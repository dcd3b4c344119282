package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/fleet"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/secret"
	"github.com/cutover-dev/cutover/internal/store"
	"github.com/cutover-dev/cutover/internal/tlsfile"
)

// fleetParts are what a gateway with an etcd block adds: the shared store
// and its membership in the fleet.
type fleetParts struct {
	etcd    *store.Etcd
	member  *fleet.Member
	joined  atomic.Pointer[fleet.Member] // member, for the controller's goroutines (othersInFlight)
	samples *fleet.Samples               // validation samples of every gateway (fleet_samples.go)
	digest  atomic.Pointer[string]       // fleetDigest of the config started or last reloaded
}

// fleetDigest is a short digest of cfg's settings that every gateway of a
// fleet must share: model_name, each pool's model and replicas (a pool no
// deployment owns is served from each gateway's own file),
// rollout.strategy and rollout.retention_mode. Status shows the members
// whose digest differs from the answering gateway's.
func fleetDigest(cfg *config.Config) string {
	h := sha256.New()
	fmt.Fprintf(h, "model_name=%q\n", cfg.ModelName)
	for _, name := range config.PoolNames {
		if p := cfg.Pools[name]; p != nil {
			fmt.Fprintf(h, "pools.%s.model=%q replicas=%q\n", name, p.Model, p.Replicas)
		}
	}
	fmt.Fprintf(h, "rollout.strategy=%q retention_mode=%q\n", cfg.Rollout.Strategy, cfg.Rollout.RetentionMode)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// setFleetDigest publishes cfg's digest from the next member refresh on;
// a no-op without a fleet.
func (g *Gateway) setFleetDigest(cfg *config.Config) {
	if g.fleet == nil {
		return
	}
	d := fleetDigest(cfg)
	g.fleet.digest.Store(&d)
}

// openStore opens the state store (OpenStore) and keeps the etcd store
// for the fleet.
func (g *Gateway) openStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	st, err := OpenStore(cfg, log)
	if err != nil {
		return nil, err
	}
	if e, ok := st.(*store.Etcd); ok {
		g.fleet = &fleetParts{etcd: e}
	}
	return st, nil
}

// OpenStore opens the state store cfg names: bbolt in state_dir, or with
// an etcd block the fleet's etcd store (*store.Etcd, keeping its local
// copy in state_dir).
func OpenStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Etcd == nil {
		st, err := store.OpenBolt(cfg.StateDir, store.WithLogger(log))
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	e := cfg.Etcd
	opts := store.EtcdOptions{Endpoints: e.Endpoints, Prefix: e.Prefix, Timeout: e.DialTimeout.D(),
		Username: e.Username, LocalDir: cfg.StateDir, Logger: log}
	if e.PasswordFile != "" {
		pw, err := secret.ReadFile(e.PasswordFile)
		if err != nil {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "etcd.password_file", Msg: err.Error()}}}
		}
		opts.Password = pw
	}
	if e.TLS.Enabled() {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.TLS.CAFile != "" {
			pool, err := tlsfile.LoadCAs(e.TLS.CAFile)
			if err != nil {
				return nil, &config.Error{Fields: []*config.FieldError{{Key: "etcd.tls.ca_file", Msg: err.Error()}}}
			}
			tc.RootCAs = pool
		}
		if e.TLS.CertFile != "" {
			c, err := tls.LoadX509KeyPair(e.TLS.CertFile, e.TLS.KeyFile)
			if err != nil {
				return nil, &config.Error{Fields: []*config.FieldError{{Key: "etcd.tls.cert_file", Msg: err.Error()}}}
			}
			tc.Certificates = []tls.Certificate{c}
		}
		opts.TLS = tc
	}
	st, err := store.OpenEtcd(opts)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return st, nil
}

// fleetName is the gateway's name in its fleet, "" without etcd.
func fleetName(cfg *config.Config) string {
	if cfg.Etcd == nil {
		return ""
	}
	return cfg.FleetName()
}

// startController restores the state. In a fleet, gateways starting
// together on an empty prefix race to write the first state: the losers
// read the winner's.
func (g *Gateway) startController(ctx context.Context) error {
	err := g.ctrl.Start(ctx)
	var ref *rollout.Refusal
	if g.fleet != nil && errors.As(err, &ref) && ref.Code == "conflict" {
		err = g.ctrl.Start(ctx)
	}
	return poolsConflictAsConfigError(err)
}

// poolsConflictAsConfigError names the key of configured pools that do
// not fit the state (rollout.PoolsConflictError), as the configuration's
// own checks do: a start exits 2, a reload answers 422. Other errors pass
// as they are.
func poolsConflictAsConfigError(err error) error {
	var pc *rollout.PoolsConflictError
	if !errors.As(err, &pc) {
		return err
	}
	return &config.Error{Fields: []*config.FieldError{{Key: pc.Key, Msg: pc.Reason}}}
}

// joinFleet makes the gateway a member of its fleet (after the admin
// listener is bound, so members can name their admin address).
func (g *Gateway) joinFleet() {
	if g.fleet == nil {
		return
	}
	g.fleet.member = fleet.New(fleet.Options{
		Store:    g.fleet.etcd,
		Name:     g.cfg.FleetName(),
		Admin:    g.AdminAddr(),
		TTL:      g.cfg.Etcd.SessionTTL.D(),
		Follower: g.ctrl,
		Lead:     g.ctrl.Run,
		Logger:   g.log,
		InFlight: func() map[string]int {
			out := map[string]int{}
			for _, name := range config.PoolNames {
				if p := g.ctrl.Pool(name); p != nil {
					if n := p.InFlight(); n > 0 {
						out[name] = int(n)
					}
				}
			}
			return out
		},
		ConfigDigest: func() string {
			if d := g.fleet.digest.Load(); d != nil {
				return *d
			}
			return ""
		},
	})
	g.fleet.joined.Store(g.fleet.member)
	g.joinSamples()
	g.metrics.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cutover_store_up",
		Help: "1 while the state store (etcd) answers, 0 while it is unreachable (the gateway serves its last routing table and refuses changes).",
	}, func() float64 {
		if up, _ := g.fleet.etcd.Health(); up {
			return 1
		}
		return 0
	}))
	g.metrics.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cutover_fleet_leader",
		Help: "1 while this gateway is the fleet's leader (runs deployments, timers, hooks, retirement), else 0.",
	}, func() float64 {
		if g.fleet.member.Leading() {
			return 1
		}
		return 0
	}))
}

// runControl runs the control plane: alone, the controller's loop; in a
// fleet, the membership, whose leader runs the controller's loop while
// every member applies the watch.
func (g *Gateway) runControl(ctx context.Context) {
	if g.fleet == nil {
		g.ctrl.Run(ctx)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if g.fleet.samples != nil {
			g.fleet.samples.Run(ctx)
		}
	}()
	g.fleet.member.Run(ctx)
	<-done
}

// Fleet is the fleet membership, nil without an etcd block.
func (g *Gateway) Fleet() *fleet.Member {
	if g.fleet == nil {
		return nil
	}
	return g.fleet.member
}

// adminController is what the admin API drives: the controller, or in a
// fleet the controller with the fleet in its status and the store's
// outage answered as 503 store_unavailable.
func (g *Gateway) adminController() admin.Controller {
	if g.fleet == nil {
		return g.ctrl
	}
	return fleetController{Controller: g.ctrl, f: g.fleet}
}

// fleetController wraps the controller for the admin API of a fleet member.
type fleetController struct {
	*rollout.Controller
	f *fleetParts
}

// Status adds the fleet.
func (c fleetController) Status() api.Status {
	s := c.Controller.Status()
	if c.f.member != nil {
		s.Fleet = c.f.member.Status()
	}
	if c.f.samples != nil && s.Deployment != nil {
		s.Deployment.GatesFromGateways = c.f.samples.Contributors(s.Deployment.ID)
		s.Deployment.ShadowFromGateways = c.f.samples.ShadowContributors(s.Deployment.ID)
	}
	return s
}

// storeDown refuses a write at once while etcd is unreachable.
func (c fleetController) storeDown() error {
	if up, since := c.f.etcd.Health(); !up {
		return unavailable(since, nil)
	}
	return nil
}

// storeErr turns the store's outage into the 503 refusal.
func (c fleetController) storeErr(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		_, since := c.f.etcd.Health()
		return unavailable(since, err)
	}
	return err
}

// unavailable is the 503 refusal. Without cause the store was known to be
// down and nothing was sent. With one, etcd did not confirm the write in
// time: it is not applied here, but a member may still commit it once it
// reaches a quorum, and then every gateway follows it from the watch.
func unavailable(since time.Time, cause error) *rollout.Refusal {
	what := "nothing changed"
	if cause != nil {
		what = fmt.Sprintf("the change was not confirmed (%v) and is not applied; should etcd still commit it, every gateway follows it: check status once etcd is back", cause)
	}
	return &rollout.Refusal{Code: "store_unavailable", Status: http.StatusServiceUnavailable,
		Reason: fmt.Sprintf("the state store (etcd) is unreachable since %s: %s; every gateway keeps serving its last routing table, retry when etcd is back",
			since.UTC().Format(time.RFC3339), what)}
}

// Promote implements admin.Controller.
func (c fleetController) Promote(ctx context.Context, actor string, req api.PromoteRequest) (api.SwitchResult, error) {
	if err := c.storeDown(); err != nil {
		return api.SwitchResult{}, err
	}
	r, err := c.Controller.Promote(ctx, actor, req)
	return r, c.storeErr(err)
}

// Rollback implements admin.Controller.
func (c fleetController) Rollback(ctx context.Context, actor string, req api.RollbackRequest) (api.SwitchResult, error) {
	if err := c.storeDown(); err != nil {
		return api.SwitchResult{}, err
	}
	r, err := c.Controller.Rollback(ctx, actor, req)
	return r, c.storeErr(err)
}

// Deploy implements admin.Controller.
func (c fleetController) Deploy(ctx context.Context, actor string, req api.DeployRequest) (api.DeployResult, error) {
	if err := c.storeDown(); err != nil {
		return api.DeployResult{}, err
	}
	r, err := c.Controller.Deploy(ctx, actor, req)
	return r, c.storeErr(err)
}

// Abort implements admin.Controller.
func (c fleetController) Abort(ctx context.Context, actor string, req api.AbortRequest) (api.Deployment, error) {
	if err := c.storeDown(); err != nil {
		return api.Deployment{}, err
	}
	r, err := c.Controller.Abort(ctx, actor, req)
	return r, c.storeErr(err)
}

// Retire implements admin.Controller.
func (c fleetController) Retire(ctx context.Context, actor string, req api.RetireRequest) (api.Deployment, error) {
	if err := c.storeDown(); err != nil {
		return api.Deployment{}, err
	}
	r, err := c.Controller.Retire(ctx, actor, req)
	return r, c.storeErr(err)
}

// History implements admin.Controller. The history is in etcd: while it
// cannot be read, a 503 that says so (a read changes nothing to confirm).
func (c fleetController) History(ctx context.Context, limit int) ([]api.Event, error) {
	h, err := c.Controller.History(ctx, limit)
	if errors.Is(err, store.ErrUnavailable) {
		_, since := c.f.etcd.Health()
		return nil, &rollout.Refusal{Code: "store_unavailable", Status: http.StatusServiceUnavailable,
			Reason: fmt.Sprintf("the history is kept in etcd, unreachable since %s; every gateway keeps serving its last routing table: ask again when etcd is back (status works meanwhile)",
				since.UTC().Format(time.RFC3339))}
	}
	return h, err
}

// othersInFlight is the requests in flight on pool at the fleet's other
// gateways, as they last reported; 0 without a fleet or before it joined.
func (g *Gateway) othersInFlight(pool string) int {
	if g.fleet == nil {
		return 0
	}
	if m := g.fleet.joined.Load(); m != nil {
		return m.OthersInFlight(pool)
	}
	return 0
}
