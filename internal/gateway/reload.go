package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin"
	"github.com/cutover-dev/cutover/internal/auth"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/validation"
)

// WithConfigFile names the file the configuration came from, so SIGHUP
// and POST /api/v1/reload can read it again. Without it a reload only
// reloads the TLS certificates.
func WithConfigFile(path string) Option { return func(o *options) { o.configFile = path } }

// WithLogLevel hands the gateway the level its logger logs at: log_level
// sets it at start and on every reload; without log_level it is the
// level v had when New was called (--log-level).
func WithLogLevel(v *slog.LevelVar) Option { return func(o *options) { o.level = v } }

// reloader reads the configuration file again on SIGHUP and on
// POST /api/v1/reload, one reload at a time.
type reloader struct {
	file  string        // empty: TLS certificates only
	admin *admin.Server // takes new tokens

	mu               sync.Mutex     // serialises reloads; guards the fields below
	token, readToken string         // the admin tokens in use
	applied          *config.Config // the configuration whose live keys are in effect
	poolKeys         map[string]string
	poolToken        string       // routing.pool_header_token_file's token in use
	dial             dialSettings // the proxy transport's timeouts
	picker           pool.Picker  // the balancer (restart only), kept across generations
	validator        *validation.Validator
	level            *slog.LevelVar // nil: the logger's level is not ours to set
	flagLevel        slog.Level     // the level without log_level

	keys atomic.Pointer[auth.Keys] // client keys in use; nil without auth.api_keys_file

	lastMu sync.Mutex
	last   api.LastReload // guarded by lastMu
}

// liveKeys are the keys a reload applies (see liveKey).
var liveKeys = append(append([]string{"admin.token_file", "admin.read_token_file", "auth.api_keys_file",
	"routing.pool_header", "routing.pool_header_token_file", "log_level"}, healthKeys...), proxyKeys...)

// healthKeys are the active health check's settings (pool.Settings).
var healthKeys = []string{"health.path", "health.interval", "health.timeout", "health.rise", "health.fall"}

// proxyKeys are the data plane's settings a reload applies to the
// requests that arrive from then on (proxy.Handler.Reconfigure);
// proxy.client is not one of them.
var proxyKeys = []string{"proxy.max_body_bytes", "proxy.response_header_timeout", "proxy.idle_timeout", "proxy.timeout",
	"proxy.drain_timeout", "proxy.access_log", "proxy.expose_replica", "proxy.forward_client_authorization",
	"proxy.max_buffered_bytes", "proxy.client_write_timeout", "proxy.connect_timeout"}

// livePrefixes are the groups of keys a reload applies.
var livePrefixes = []string{"hooks.", "validation.gates."}

// poolKeys are the keys of a pool a reload applies when no deployment
// owns the pool (the state holds no spec for it).
var poolKeys = []string{"model", "replicas", "api_key_file"}

// liveKey reports whether a reload applies key k (as changedKeys names
// it); every other key needs a restart.
func liveKey(k string) bool {
	if slices.Contains(liveKeys, k) || slices.ContainsFunc(livePrefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
		return true
	}
	_, ok := poolKey(k)
	return ok
}

// poolKey returns the pool of a key of poolKeys (pools.<pool>.<key>).
func poolKey(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, "pools.")
	if !ok {
		return "", false
	}
	name, key, ok := strings.Cut(rest, ".")
	return name, ok && slices.Contains(poolKeys, key)
}

// errNoConfigFile refuses POST /api/v1/reload on a gateway started
// without a file (the demo, tests).
var errNoConfigFile = &rollout.Refusal{Code: "no_config_file", Status: http.StatusConflict,
	Reason: "this gateway was not started from a configuration file: nothing to reload"}

// Reload reads the configuration file again and checks it as a start
// would (every key, the token, the files it names). An invalid file
// changes nothing and returns the error naming the keys. A valid one
// reloads the TLS certificates and applies every key that can change
// without a restart: the admin tokens, health checks, the proxy's
// settings (for requests that arrive from now on), client API keys,
// routing by header, validation gates, hooks, log_level, and the model,
// replicas and key file of pools no deployment owns (through
// rollout.Controller.SetPools: the path a deployment's change takes). Key files are read again
// even when their path did not change. The result names what changed
// and was applied, the changed keys that need a restart, and those that
// change nothing because a deployment owns their pool.
func (g *Gateway) Reload(ctx context.Context) (*api.ReloadResult, error) {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	if g.reload.file == "" {
		return nil, errNoConfigFile
	}
	cfg, err := config.Load(g.reload.file)
	if err != nil {
		return nil, err
	}
	token, err := cfg.AdminToken()
	if err != nil {
		return nil, err
	}
	pre, err := prepare(cfg, token)
	if err != nil {
		return nil, err
	}
	sinceStart, err := changedKeys(g.cfg, cfg)
	if err != nil {
		return nil, err
	}
	fresh, err := changedKeys(g.reload.applied, cfg)
	if err != nil {
		return nil, err
	}
	dial := dialSettingsOf(cfg)
	transport := g.proxy.Transport()
	if dial != g.reload.dial {
		transport = g.proxyTransport(dial)
	}
	popts, err := g.proxyOptions(cfg, transport, pre.keys)
	if err != nil {
		return nil, err
	}
	res := &api.ReloadResult{File: g.reload.file, Applied: []string{}, RestartNeeded: []string{}, NotApplied: []string{}}
	for _, k := range sinceStart {
		if !liveKey(k) {
			res.RestartNeeded = append(res.RestartNeeded, k)
		}
	}
	// What can still fail comes first: the certificates are read (and
	// used only once the rest succeeded), then the pools (an external
	// load balancer may refuse them, and then keeps the previous ones).
	var useTLS func()
	if len(g.tls.certs) > 0 {
		if useTLS, err = g.prepareTLS(); err != nil {
			return nil, fmt.Errorf("TLS certificates: %w", err)
		}
	}
	if err := g.liveHealthStillPasses(ctx, cfg.Health, fresh); err != nil {
		return nil, err
	}
	owned, err := g.ctrl.SetPools(ctx, pre.specs)
	if err != nil {
		return nil, poolsConflictAsConfigError(err)
	}
	if useTLS != nil {
		useTLS()
		res.Applied = append(res.Applied, "TLS certificates")
	}
	// A deployment's pool takes only the key file it inherits (its
	// deployment named none of its own).
	inert := func(name, k string) bool {
		return slices.Contains(owned, name) && (!strings.HasSuffix(k, ".api_key_file") || g.ctrl.OwnKeyFile(name))
	}
	for _, k := range fresh {
		if !liveKey(k) {
			continue
		}
		if name, ok := poolKey(k); ok && inert(name, k) {
			res.NotApplied = append(res.NotApplied, k)
			continue
		}
		res.Applied = append(res.Applied, k)
	}
	// From here on nothing fails.
	if slices.ContainsFunc(fresh, func(k string) bool { return slices.Contains(healthKeys, k) }) {
		h := cfg.Health
		g.checker.SetSettings(pool.Settings{Path: h.Path, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise, Fall: h.Fall})
	}
	if token != g.reload.token || pre.readToken != g.reload.readToken {
		if err := g.reload.admin.SetTokens(token, pre.readToken); err != nil { // prepare checked what it refuses
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "admin.read_token_file", Msg: err.Error()}}}
		}
		g.reload.token, g.reload.readToken = token, pre.readToken
		res.Applied = append(res.Applied, "admin tokens")
	}
	old := g.proxy.Transport()
	if err := g.proxy.Reconfigure(popts); err != nil {
		return nil, fmt.Errorf("proxy: %w", err) // cannot happen: proxy.client needs a restart
	}
	if transport != old {
		if c, ok := old.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections() // requests in flight keep theirs
		}
	}
	g.reload.dial = dial
	// The data plane counts on the new keys since Reconfigure: carry the
	// old counts over before the metrics see the new keys, so a scrape in
	// between sees the old counters, never a drop.
	if prev := g.reload.keys.Load(); prev != nil && pre.keys != nil {
		pre.keys.Carry(prev)
		if !pre.keys.Same(prev) && !slices.Contains(fresh, "auth.api_keys_file") {
			res.Applied = append(res.Applied, "auth.api_keys_file (contents)")
		}
	}
	g.reload.keys.Store(pre.keys)
	if popts.PoolHeaderToken != g.reload.poolToken && !slices.Contains(fresh, "routing.pool_header_token_file") {
		res.Applied = append(res.Applied, "routing.pool_header_token_file (contents)")
	}
	g.reload.poolToken = popts.PoolHeaderToken
	for _, name := range config.PoolNames {
		k := "pools." + name + ".api_key_file"
		switch {
		case pre.poolKeys[name] == g.reload.poolKeys[name] || slices.Contains(fresh, k):
		case inert(name, k):
			res.NotApplied = append(res.NotApplied, k+" (contents)")
		default:
			res.Applied = append(res.Applied, k+" (contents)")
		}
	}
	g.reload.poolKeys = pre.poolKeys
	g.drain.Store(int64(cfg.Proxy.DrainTimeout.D()))
	if g.reload.validator != nil {
		g.reload.validator.SetGates(validation.GatesFromConfig(cfg.Validation.Gates))
	}
	g.ctrl.SetHooks(cfg.HookSpecs())
	g.setLogLevel(cfg)
	g.setFleetDigest(cfg)
	g.reload.applied = cfg
	return res, nil
}

// setLogLevel sets the logger's level from cfg's log_level, or back to
// the one it started with when log_level is not set.
func (g *Gateway) setLogLevel(cfg *config.Config) {
	if g.reload.level == nil {
		return
	}
	lvl := g.reload.flagLevel
	if cfg.LogLevel != "" {
		_ = lvl.UnmarshalText([]byte(cfg.LogLevel)) // checked by Validate
	}
	g.reload.level.Set(lvl)
}

// dialSettings are the keys the data plane's client to replicas is built
// with: a reload that changes one builds a new client.
type dialSettings struct {
	responseHeader, connect time.Duration
}

// dialSettingsOf returns cfg's dialSettings.
func dialSettingsOf(cfg *config.Config) dialSettings {
	return dialSettings{cfg.Proxy.ResponseHeaderTimeout.D(), cfg.Proxy.ConnectTimeout.D()}
}

// proxyTransport is the data plane's client to replicas, of the kind
// proxy.client names (a start's: a reload cannot change it).
func (g *Gateway) proxyTransport(d dialSettings) http.RoundTripper {
	var t http.RoundTripper = g.tls.transport(d.responseHeader, d.connect)
	if g.cfg.Proxy.Client == "cutover" {
		t = &proxy.Upstream{ResponseHeaderTimeout: d.responseHeader, DialTimeout: d.connect, Fallback: t}
	}
	return t
}

// proxyOptions are the data plane's options under cfg, sending through
// transport; New and Reload both build them here. What only a restart
// changes (the balancer, the observers, the mirror, outlier detection)
// is the gateway's, whatever cfg says.
func (g *Gateway) proxyOptions(cfg *config.Config, transport http.RoundTripper, keys *auth.Keys) (proxy.Options, error) {
	poolHeader, poolToken, err := poolHeaderOptions(cfg)
	if err != nil {
		return proxy.Options{}, err
	}
	var clientAuth proxy.ClientAuth
	if keys != nil {
		clientAuth = keys
	}
	p := cfg.Proxy
	return proxy.Options{
		Transport:    transport,
		Picker:       g.reload.picker,
		MaxBodyBytes: p.MaxBodyBytes,
		IdleTimeout:  p.IdleTimeout.D(),
		Timeout:      p.Timeout.D(),
		Logger:       g.log,
		AccessLog:    p.AccessLogEnabled(),
		Observer:     observers{&g.observers},
		Mirror:       mirrorOrNil(g.mirror),

		ForwardClientAuthorization: p.ForwardClientAuthorization,
		ClientAuth:                 clientAuth,
		MaxBufferedBytes:           p.MaxBufferedBytes,
		ClientWriteTimeout:         p.ClientWriteTimeout.D(),
		Outlier:                    g.outlier,
		HideReplica:                !p.ExposeReplicaEnabled(),
		PoolHeader:                 poolHeader,
		PoolHeaderToken:            poolToken,
		Tracer:                     g.requestTracer(),
	}, nil
}

// onHUP is SIGHUP: a reload, logged.
func (g *Gateway) onHUP(ctx context.Context) {
	if g.reload.file == "" {
		if len(g.tls.certs) == 0 {
			g.log.Warn("SIGHUP: no TLS listener, nothing to reload; other configuration changes need a restart")
			return
		}
		if err := g.ReloadTLS(); err != nil {
			g.log.Error("SIGHUP: TLS reload failed; keeping the current certificates", "error", err)
		}
		return
	}
	res, err := g.Reload(ctx)
	g.logReload("SIGHUP", res, err)
}

// logReload says how a reload went, in the log and in GET /api/v1/reload.
func (g *Gateway) logReload(by string, res *api.ReloadResult, err error) {
	now := time.Now()
	last := api.LastReload{Time: &now, Trigger: by, Result: res}
	if err != nil {
		last.Error, last.Result = err.Error(), nil
	}
	g.reload.lastMu.Lock()
	g.reload.last = last
	g.reload.lastMu.Unlock()
	if err != nil {
		g.log.Error(by+": reload refused; nothing changed", "file", g.reload.file, "error", err)
		return
	}
	if len(res.RestartNeeded) > 0 {
		g.log.Warn(by+": configuration reloaded; some changes need a restart", "file", res.File,
			"applied", res.Applied, "restart_needed", res.RestartNeeded)
		return
	}
	g.log.Info(by+": configuration reloaded", "file", res.File, "applied", res.Applied)
}

// handleReload is POST /api/v1/reload. A file that cannot be used is 422
// naming the keys; nothing changed.
func (g *Gateway) handleReload(r *http.Request) (any, error) {
	res, err := g.Reload(r.Context())
	g.logReload("POST /api/v1/reload", res, err)
	var ref *rollout.Refusal
	if err != nil && !errors.As(err, &ref) && !errors.Is(err, context.Canceled) {
		return nil, &rollout.Refusal{Code: "invalid_config", Status: http.StatusUnprocessableEntity, Reason: err.Error()}
	}
	return res, err
}

// handleLastReload is GET /api/v1/reload.
func (g *Gateway) handleLastReload(*http.Request) (any, error) {
	g.reload.lastMu.Lock()
	defer g.reload.lastMu.Unlock()
	return g.reload.last, nil
}

// changedKeys lists the dotted keys whose values differ between the
// running configuration and the new one, sorted.
func changedKeys(running, next *config.Config) ([]string, error) {
	a, err := flatten(running)
	if err != nil {
		return nil, err
	}
	b, err := flatten(next)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return slices.Compact(keys), nil
}

// flatten maps c's keys, as YAML spells them, to their values: a list or
// scalar is one value under its parent key.
func flatten(c *config.Config) (map[string]string, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("compare configurations: %w", err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("compare configurations: %w", err)
	}
	out := map[string]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			walk(n.Content[0], path)
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if path != "" {
					k = path + "." + k
				}
				walk(n.Content[i+1], k)
			}
			return
		}
		v, _ := yaml.Marshal(n)
		out[path] = string(v)
	}
	walk(&n, "")
	return out, nil
}
