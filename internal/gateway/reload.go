package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/admin"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/rollout"
)

// WithConfigFile names the file the configuration came from, so SIGHUP
// and POST /api/v1/reload can read it again. Without it a reload only
// reloads the TLS certificates.
func WithConfigFile(path string) Option { return func(o *options) { o.configFile = path } }

// reloader reads the configuration file again on SIGHUP and on
// POST /api/v1/reload, one reload at a time.
type reloader struct {
	file  string        // empty: TLS certificates only
	admin *admin.Server // takes new tokens

	mu               sync.Mutex // serialises reloads; guards the tokens
	token, readToken string     // the admin tokens in use

	lastMu sync.Mutex
	last   api.LastReload // guarded by lastMu
}

// liveKeys are the keys a reload applies: they never need a restart.
var liveKeys = append([]string{"admin.token_file", "admin.read_token_file"}, healthKeys...)

// healthKeys are the active health check's settings (pool.Settings).
var healthKeys = []string{"health.path", "health.interval", "health.timeout", "health.rise", "health.fall"}

// errNoConfigFile refuses POST /api/v1/reload on a gateway started
// without a file (the demo, tests).
var errNoConfigFile = &rollout.Refusal{Code: "no_config_file", Status: http.StatusConflict,
	Reason: "this gateway was not started from a configuration file: nothing to reload"}

// Reload reads the configuration file again and checks it as a start
// would (every key, the token, the files it names). An invalid file
// changes nothing and returns the error naming the keys. A valid one
// reloads the TLS certificates, the admin tokens (admin.token_file,
// admin.read_token_file) and the active health checks' settings
// (health.path, interval, timeout, rise, fall), and lists the other keys
// whose change needs a restart: the rest of the configuration is not
// applied live yet.
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
	changed, err := changedKeys(g.cfg, cfg)
	if err != nil {
		return nil, err
	}
	res := &api.ReloadResult{File: g.reload.file, Applied: []string{}, RestartNeeded: []string{}}
	for _, k := range changed {
		if !slices.Contains(liveKeys, k) {
			res.RestartNeeded = append(res.RestartNeeded, k)
		}
	}
	// The certificates first: they are all that can still fail.
	if len(g.tls.certs) > 0 {
		if err := g.ReloadTLS(); err != nil {
			return nil, fmt.Errorf("TLS certificates: %w", err)
		}
		res.Applied = append(res.Applied, "TLS certificates")
	}
	if slices.ContainsFunc(changed, func(k string) bool { return slices.Contains(healthKeys, k) }) {
		h := cfg.Health
		g.checker.SetSettings(pool.Settings{Path: h.Path, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise, Fall: h.Fall})
		res.Applied = append(res.Applied, "health checks")
	}
	if token != g.reload.token || pre.readToken != g.reload.readToken {
		if err := g.reload.admin.SetTokens(token, pre.readToken); err != nil {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "admin.read_token_file", Msg: err.Error()}}}
		}
		g.reload.token, g.reload.readToken = token, pre.readToken
		res.Applied = append(res.Applied, "admin tokens")
	}
	return res, nil
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
