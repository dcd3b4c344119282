// Package config holds cutover's configuration file schema: its defaults,
// strict YAML decoding and validation with errors that name the key.
package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/secret"
	"github.com/cutover-dev/cutover/internal/selfaddr"
)

// PoolNames are the two pools every configuration has, in display order.
var PoolNames = []string{"blue", "green"}

// Config is what the user wrote in the configuration file, after defaults.
type Config struct {
	// Listen is the address client traffic arrives on. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Admin configures the admin API listener.
	Admin Admin `yaml:"admin"`
	// StateDir is the directory of the embedded state store. Default
	// /var/lib/cutover.
	StateDir string `yaml:"state_dir"`
	// Live is the pool that is live on the very first start. The persisted
	// state wins on every later start.
	Live string `yaml:"live"`
	// ModelName, when set, is the one model name clients use across versions;
	// the gateway rewrites it to the serving pool's model id. Empty means
	// requests pass through unchanged.
	ModelName string `yaml:"model_name"`
	// Pools maps pool name (blue, green) to its replicas.
	Pools map[string]*Pool `yaml:"pools"`
	// Balancer picks a replica within a pool: least_outstanding (default,
	// power of two random choices), round_robin, or llm (engine metrics
	// and prefix affinity, tuned by Balancing).
	Balancer string `yaml:"balancer"`
	// Balancing tunes the llm balancer.
	Balancing Balancing `yaml:"balancing"`
	// Health configures active health checks.
	Health Health `yaml:"health"`
	// Proxy holds the data plane's limits.
	Proxy Proxy `yaml:"proxy"`
	// Rollout configures deployments: warm-up, deadlines, promotion and
	// retention of the old pool.
	Rollout Rollout `yaml:"rollout"`
	// Validation configures the validating phase and the post-promotion
	// window.
	Validation Validation `yaml:"validation"`
	// Preview configures the listener that reaches the candidate pool.
	Preview Preview `yaml:"preview"`
	// Routing configures routing by request header (off by default).
	Routing Routing `yaml:"routing"`
	// Driver is what applies the routing: builtin (this gateway serves
	// client traffic; the default), nginx or haproxy (cutover drives that
	// load balancer, which serves the traffic).
	Driver string `yaml:"driver"`
	// Nginx configures the nginx driver.
	Nginx NginxDriver `yaml:"nginx"`
	// HAProxy configures the haproxy driver.
	HAProxy HAProxyDriver `yaml:"haproxy"`
	// Hooks maps a lifecycle event (on_deploy, before_promote, on_promote,
	// on_rollback, on_retire, on_fail) to the hooks run for it, in order.
	Hooks map[string][]Hook `yaml:"hooks"`
	// Auth configures client authentication on the traffic and preview
	// listeners.
	Auth Auth `yaml:"auth"`
	// TLS, when its files are set, serves the traffic listener (listen)
	// over TLS.
	TLS TLS `yaml:"tls"`
	// UpstreamTLS configures connections to https replicas.
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
	// Name is this gateway's name in a fleet. Default hostname:port of
	// listen (see FleetName).
	Name string `yaml:"name"`
	// Etcd, when set, keeps the state in etcd, shared by a fleet of
	// gateways (see fleet.go). Nil: bbolt in state_dir, one gateway.
	Etcd *Etcd `yaml:"etcd"`
	// Agents are the `cutover agent`s that start replicas for deployments
	// given no --replica (see capacity.go). Empty: cutover starts none.
	Agents []Agent `yaml:"agents"`
	// Launch sizes the replicas started through Agents.
	Launch Launch `yaml:"launch"`
	// LogLevel is the log level of serve: debug, info, warn or error.
	// Empty (the default) means --log-level's. A reload applies it.
	LogLevel string `yaml:"log_level"`
	// Tracing, when set, exports OpenTelemetry spans of proxied requests
	// and control-plane transitions (see tracing.go). Nil: off.
	Tracing *Tracing `yaml:"tracing"`
}

// LogLevels are the values log_level takes.
var LogLevels = []string{"debug", "info", "warn", "error"}

// Auth configures client authentication on the data plane.
type Auth struct {
	// APIKeysFile is a file of client keys stored as SHA-256 hashes, each
	// with an id and optional allowed models (see package auth). Empty
	// means clients need no key.
	APIKeysFile string `yaml:"api_keys_file"`
}

// Rollout configures the lifecycle of a deployment.
type Rollout struct {
	// MinReady is how many of the new pool's replicas must be healthy and
	// warmed up before it is ready, and how many healthy replicas the live
	// pool needs before the old one may be retired. Zero means all.
	MinReady int `yaml:"min_ready"`
	// ProgressDeadline bounds warming (and validation): past it the
	// deployment fails with the reason. Default 30m.
	ProgressDeadline Duration `yaml:"progress_deadline"`
	// AutoPromote promotes a ready deployment by itself after
	// AutoPromoteAfter. Default false: wait for cutover promote.
	AutoPromote bool `yaml:"auto_promote"`
	// AutoPromoteAfter is how long a deployment stays ready before an
	// automatic promotion. Default 0.
	AutoPromoteAfter Duration `yaml:"auto_promote_after"`
	// Retention is how long the old pool is kept after a promotion, for an
	// instant rollback. Default 1h, at most 24h.
	Retention Duration `yaml:"retention"`
	// RetentionMode is what happens to the old pool during its retention:
	// "keep" (default) leaves it awake; "sleep" puts its replicas to sleep
	// through vLLM's sleep-mode endpoints and wakes them before a rollback;
	// "shrink" stops all but ShrinkTo of its replicas started through the
	// agents, and a rollback first brings it back to full size (or, asked
	// with now, switches at once onto what is left); "stop" retires it at
	// once after the promotion (no retention, no rollback; see
	// capacity.go).
	RetentionMode string `yaml:"retention_mode"`
	// ShrinkTo is how many replicas of the old pool retention_mode shrink
	// keeps during the retention. Nil (unset) means 1; set, it must be at
	// least 1, and only with retention_mode shrink.
	ShrinkTo *int `yaml:"shrink_to"`
	// WakeTimeout bounds the wake-up of one sleeping replica before a
	// rollback (retention_mode: sleep). Default 2m.
	WakeTimeout Duration `yaml:"wake_timeout"`
	// DrainTimeout bounds the wait for the old pool's in-flight requests
	// and streams when its retention ends. Default 5m.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Warmup configures the requests sent to every new replica before it
	// counts as ready.
	Warmup Warmup `yaml:"warmup"`
	// Preflight configures the real completion sent to each healthy
	// replica of a pool right before a promote or rollback makes it live.
	Preflight Preflight `yaml:"preflight"`
	// Strategy is StrategyBlueGreen (also when empty: all at once on
	// promote) or StrategyCanary (weighted steps first, see Canary).
	Strategy string `yaml:"strategy"`
	// Canary configures the steps of the canary strategy.
	Canary Canary `yaml:"canary"`
	// Affinity keeps requests with the same key on one version while the
	// canary's weights hold.
	Affinity Affinity `yaml:"affinity"`
}

// Preflight configures the completion check made right before a switch.
type Preflight struct {
	// Timeout bounds the preflight completions (all replicas at once); a
	// replica that has not answered by then counts as failed. Default 5s.
	Timeout Duration `yaml:"timeout"`
}

// Warmup configures warm-up requests.
type Warmup struct {
	// Requests are sent to every new replica, in order. Default: one
	// non-streamed and one streamed chat completion. An empty list turns
	// warm-up off.
	Requests []WarmupRequest `yaml:"requests"`
	// Timeout bounds one warm-up request (the first one on a cold server
	// can be slow). Default 5m.
	Timeout Duration `yaml:"timeout"`
}

// WarmupRequest is one warm-up chat completion.
type WarmupRequest struct {
	// Prompt is the user message.
	Prompt string `yaml:"prompt"`
	// Stream asks for a streamed answer (which must end with [DONE]).
	Stream bool `yaml:"stream"`
	// MaxTokens caps the answer. Zero means 16.
	MaxTokens int `yaml:"max_tokens"`
}

// Hook is one lifecycle hook: exactly one of Command and Webhook.
type Hook struct {
	// Command is an argv run without a shell; it gets CUTOVER_* variables.
	Command []string `yaml:"command"`
	// Webhook is an http(s) URL that receives a POST with a JSON body.
	Webhook string `yaml:"webhook"`
	// Timeout bounds one run. Default 30s.
	Timeout Duration `yaml:"timeout"`
}

// Admin configures the admin API.
type Admin struct {
	// Listen is the admin API address. Default 127.0.0.1:8081.
	Listen string `yaml:"listen"`
	// TokenFile is a file holding the bearer token. CUTOVER_ADMIN_TOKEN
	// overrides it when set.
	TokenFile string `yaml:"token_file"`
	// ReadTokenFile is a file holding a second, read-only token: it may
	// read status, history, deployments, metrics and the dashboard, and
	// is refused (403) for every change. Empty means none.
	ReadTokenFile string `yaml:"read_token_file"`
	// TLS, when its files are set, serves the admin API over TLS,
	// optionally requiring client certificates (client_ca_file).
	TLS TLS `yaml:"tls"`
	// APIKeyDirs are the directories under which a deploy may name a key
	// file of its own (api_key_file, cutover deploy --api-key-file),
	// besides the files pools.<pool>.api_key_file names. Empty (the
	// default) allows only those: the gateway never reads, and sends as a
	// Bearer token, a file an admin caller picks at will.
	APIKeyDirs []string `yaml:"api_key_dirs,omitempty"`
}

// Pool is one set of replicas serving one model version.
type Pool struct {
	// Model is the model id the pool's replicas serve (checked against
	// /v1/models).
	Model string `yaml:"model"`
	// Replicas are base URLs such as http://10.0.0.1:8000.
	Replicas []string `yaml:"replicas"`
	// APIKeyFile is a file holding the key the replicas want as
	// Authorization: Bearer KEY (vLLM's --api-key), sent with health
	// checks, warm-up, synthetic tests, shadow copies and proxied
	// requests. Empty means none.
	APIKeyFile string `yaml:"api_key_file"`
	// GPUsPerReplica is how many GPUs each of Replicas holds, for the GPU
	// accounting only (cutover did not start them, so it cannot know).
	// Zero: they count none. Replicas started through the agents count
	// what their agent gave them.
	GPUsPerReplica int `yaml:"gpus_per_replica"`
}

// Health configures active health checks of every replica.
type Health struct {
	// Path is requested with GET on every replica. Default /health.
	Path string `yaml:"path"`
	// Interval between two checks of one replica. Default 5s.
	Interval Duration `yaml:"interval"`
	// Timeout of one check. Default 2s.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many consecutive passes bring an unhealthy replica back.
	// Default 2.
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failures mark a healthy replica
	// unhealthy. Default 2.
	Fall int `yaml:"fall"`
	// Outlier configures passive health checks: replicas whose client
	// requests fail are ejected for a while.
	Outlier Outlier `yaml:"outlier"`
}

// Outlier configures outlier detection, as Envoy's: every request's
// outcome counts, and a replica failing too often gets no traffic for an
// ejection time that grows with each ejection in a row. A failure is a 5xx
// answer, no connection, a connection that broke before any answer, an
// answer that broke off, or a response-header or idle timeout; a 4xx is
// not, and a client that leaves says nothing.
type Outlier struct {
	// Consecutive5xx ejects a replica after that many failed requests in
	// a row. Default 5; 0 turns the rule off; 1 is refused (one request
	// must never eject a replica).
	Consecutive5xx int `yaml:"consecutive_5xx"`
	// FailureRate ejects a replica when at least this share (0 to 1) of
	// its requests in one Interval failed. Default 0.5; 0 turns it off.
	FailureRate float64 `yaml:"failure_rate"`
	// Interval is the failure-rate window. Default 10s.
	Interval Duration `yaml:"interval"`
	// MinimumRequests is how many requests a window needs before its
	// failure rate counts. Default 20.
	MinimumRequests int `yaml:"minimum_requests"`
	// BaseEjectionTime is the first ejection's length; the n-th in a row
	// lasts n times as long. Default 30s.
	BaseEjectionTime Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps an ejection; a replica that served that long
	// since its last ejection starts again from the base time. Default 5m.
	MaxEjectionTime Duration `yaml:"max_ejection_time"`
	// MaxEjectionPercent is the largest share (0-100) of a pool that may be
	// out of rotation (unhealthy or ejected) for an ejection to happen:
	// at 50, one of two replicas, never a pool's only one. Default 50;
	// 0 turns ejection off.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// Proxy holds the data plane's limits.
type Proxy struct {
	// MaxBodyBytes limits request bodies; larger ones get 413. Default 32 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ResponseHeaderTimeout bounds the wait for a replica's response headers.
	// A non-streamed completion sends its headers only when it is done, so
	// the default is generous: 10m. Zero means no limit.
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	// IdleTimeout bounds the silence between two chunks of a response body
	// (streams included). Default 5m. Zero means no limit.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Timeout bounds a whole request, streams included. Default 0: none,
	// since generations can legitimately run for many minutes.
	Timeout Duration `yaml:"timeout"`
	// DrainTimeout bounds how long SIGTERM waits for in-flight requests and
	// streams. Default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// AccessLog writes one log line per proxied request. Default true.
	AccessLog *bool `yaml:"access_log"`
	// ExposeReplica sends X-Cutover-Replica (the replica's URL, an
	// internal address) with every answer. Default true, for demos and
	// debugging; set false where clients must not learn the addresses.
	ExposeReplica *bool `yaml:"expose_replica"`
	// Client is the HTTP machinery of the data plane: cutover (the
	// default: a connection loop and replica client built for proxying
	// HTTP/1.1, which hands anything unusual to net/http) or net/http
	// (the standard library's server and Transport throughout).
	Client string `yaml:"client"`
	// ForwardClientAuthorization sends the client's Authorization header
	// on to replicas whose pool has no api_key_file. Default false: it is
	// dropped, so a client's key for the gateway never reaches a replica.
	ForwardClientAuthorization bool `yaml:"forward_client_authorization"`
	// MaxBufferedBytes bounds the request body bytes all requests together
	// hold in memory; a request that would pass it gets 503 overloaded.
	// At least MaxBodyBytes. Default 512 MiB.
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
	// ClientWriteTimeout cuts a client that accepts no byte of an answer
	// for that long, and cancels the replica's request. Default 60s (like
	// nginx's send_timeout). Zero means no limit.
	ClientWriteTimeout Duration `yaml:"client_write_timeout"`
	// ConnectTimeout bounds opening a connection to a replica (nginx's
	// proxy_connect_timeout); a request whose connect times out goes to
	// another replica. Default 5s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// Duration is a time.Duration written as a Go duration string ("5s", "1h").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 30s, 5m, 1h): %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration with every default set and no pools.
func Default() *Config {
	t := true
	return &Config{
		Listen:   "127.0.0.1:8080",
		Admin:    Admin{Listen: "127.0.0.1:8081"},
		StateDir: "/var/lib/cutover",
		Live:     "blue",
		Launch:   Launch{Replicas: DefaultLaunchReplicas, GPUsPerReplica: DefaultLaunchGPUs, ReadyTimeout: Duration(DefaultLaunchReadyTimeout)},
		Balancer: "least_outstanding",
		Driver:   "builtin",
		Nginx:    defaultNginx(), HAProxy: defaultHAProxy(), Balancing: defaultBalancing(),
		Health: Health{
			Path:     "/health",
			Interval: Duration(5 * time.Second),
			Timeout:  Duration(2 * time.Second),
			Rise:     2,
			Fall:     2,
			Outlier: Outlier{
				Consecutive5xx:     5,
				FailureRate:        0.5,
				Interval:           Duration(10 * time.Second),
				MinimumRequests:    20,
				BaseEjectionTime:   Duration(30 * time.Second),
				MaxEjectionTime:    Duration(5 * time.Minute),
				MaxEjectionPercent: 50,
			},
		},
		Proxy: Proxy{
			MaxBodyBytes:          32 << 20,
			ResponseHeaderTimeout: Duration(10 * time.Minute),
			IdleTimeout:           Duration(5 * time.Minute),
			DrainTimeout:          Duration(30 * time.Second),
			AccessLog:             &t,
			Client:                "cutover",
			MaxBufferedBytes:      512 << 20,
			ClientWriteTimeout:    Duration(60 * time.Second),
			ConnectTimeout:        Duration(5 * time.Second),
		},
		Validation: defaultValidation(),
		Rollout: Rollout{
			ProgressDeadline: Duration(30 * time.Minute),
			Retention:        Duration(time.Hour),
			RetentionMode:    "keep",
			WakeTimeout:      Duration(2 * time.Minute),
			DrainTimeout:     Duration(5 * time.Minute),
			Preflight:        Preflight{Timeout: Duration(5 * time.Second)},
			Warmup: Warmup{
				Requests: []WarmupRequest{
					{Prompt: "Hello! Reply with a short greeting.", MaxTokens: 16},
					{Prompt: "Hello! Reply with a short greeting.", MaxTokens: 16, Stream: true},
				},
				Timeout: Duration(5 * time.Minute),
			},
		},
	}
}

// FieldError is one invalid key of the configuration.
type FieldError struct {
	// Key is the dotted path of the key, such as pools.blue.replicas[1].
	Key string
	// Line is the line in the file, 0 when unknown.
	Line int
	// Msg says what is wrong, with the bad value.
	Msg string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Key, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Key, e.Msg)
}

// Error is an invalid configuration: one or more FieldErrors.
type Error struct {
	// File is the configuration file's path, empty when not from a file.
	File string
	// Fields lists every problem found, in file order where known.
	Fields []*FieldError
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "invalid config %s:", e.File)
	} else {
		b.WriteString("invalid config:")
	}
	for _, f := range e.Fields {
		b.WriteString("\n  ")
		b.WriteString(f.Error())
	}
	return b.String()
}

// IsInvalid reports whether err is (or wraps) an invalid configuration.
func IsInvalid(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

// AccessLogEnabled reports whether access logging is on (default true).
func (p *Proxy) AccessLogEnabled() bool { return p.AccessLog == nil || *p.AccessLog }

// ExposeReplicaEnabled reports whether answers carry X-Cutover-Replica
// (default true).
func (p *Proxy) ExposeReplicaEnabled() bool { return p.ExposeReplica == nil || *p.ExposeReplica }

// validPort reports a listen port net.Listen can take: a number from 0 to
// 65535, or a service name (letters, digits and dashes, starting with a
// letter), which is only looked up when binding.
func validPort(p string) bool {
	if n, err := strconv.Atoi(p); err == nil {
		return n >= 0 && n <= 65535 && p[0] != '+' && p[0] != '-'
	}
	for i, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return true
}

// Validate checks c and returns an *Error naming every bad key, or nil.
// It is pure: it reads no files and opens no sockets.
func (c *Config) Validate() error {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	checkAddr := func(key, v string) {
		if v == "" {
			add(key, "must be set (host:port)")
			return
		}
		_, port, err := net.SplitHostPort(v)
		switch {
		case err != nil || port == "":
			add(key, "%q is not host:port", v)
		case !validPort(port):
			add(key, "%q: the port must be a number from 0 to 65535 (or a service name such as http)", v)
		}
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin.listen", c.Admin.Listen)
	if c.Preview.Listen != "" {
		checkAddr("preview.listen", c.Preview.Listen)
	}
	for i, d := range c.Admin.APIKeyDirs {
		if !filepath.IsAbs(d) {
			add(fmt.Sprintf("admin.api_key_dirs[%d]", i), "%q must be an absolute directory", d)
		}
	}
	if c.LogLevel != "" && !slices.Contains(LogLevels, c.LogLevel) {
		add("log_level", "%q: want one of %s", c.LogLevel, strings.Join(LogLevels, ", "))
	}
	if listenClash(c.Listen, c.Admin.Listen) {
		add("admin.listen", "%q takes the same address as listen %q; the admin API needs its own", c.Admin.Listen, c.Listen)
	}
	switch {
	case c.StateDir == "":
		add("state_dir", "must be set")
	case !filepath.IsAbs(c.StateDir):
		add("state_dir", "%q must be an absolute directory (a relative one would depend on the directory cutover starts in)", c.StateDir)
	}
	if len(c.Pools) == 0 {
		add("pools", "missing: define pools blue and green")
	}
	for name := range c.Pools {
		if !slices.Contains(PoolNames, name) {
			add("pools."+name, "unknown pool %q (the pools are blue and green)", name)
		}
	}
	seen := map[string]string{}
	// Pure: loopback, localhost and the listeners' literal addresses
	// only; the gateway checks names and interface addresses at deploy
	// and before a switch.
	self := selfaddr.New(
		selfaddr.Listener{Role: "listen", Addr: c.Listen},
		selfaddr.Listener{Role: "admin.listen", Addr: c.Admin.Listen},
		selfaddr.Listener{Role: "preview.listen", Addr: c.Preview.Listen})
	self.Static = true
	for _, name := range PoolNames {
		p, ok := c.Pools[name]
		if len(c.Pools) > 0 && (!ok || p == nil) {
			add("pools."+name, "missing (both blue and green must be defined; replicas may be empty for the standby)")
			continue
		}
		if !ok {
			continue
		}
		key := "pools." + name
		if len(p.Replicas) > 0 && p.Model == "" {
			add(key+".model", "must be set: the model id the pool serves")
		}
		if p.GPUsPerReplica < 0 {
			add(key+".gpus_per_replica", "%d: must be 0 or more", p.GPUsPerReplica)
		}
		if err := pool.CheckModelID(p.Model); err != nil {
			add(key+".model", "%v", err)
		}
		if len(p.Replicas) > pool.MaxReplicas {
			add(key+".replicas", "%d replicas: at most %d per pool", len(p.Replicas), pool.MaxReplicas)
		}
		for i, r := range p.Replicas {
			rkey := fmt.Sprintf("%s.replicas[%d]", key, i)
			norm, err := NormalizeReplicaURL(r)
			if err != nil {
				add(rkey, "%v", err)
				continue
			}
			if other, dup := seen[pool.ReplicaKey(norm)]; dup {
				add(rkey, "duplicate replica %q (already %s)", r, other)
				continue
			}
			seen[pool.ReplicaKey(norm)] = rkey
			if m, ok := self.Reaches(context.Background(), norm); ok {
				add(rkey, "%q is %s, not a model server: the gateway would send every request of the pool back to itself", r, m)
			}
		}
	}
	if c.ModelName != "" {
		if err := pool.CheckModelID(c.ModelName); err != nil {
			add("model_name", "%v", err)
		}
	}
	if c.Live == "" {
		add("live", "must be set to blue or green")
	} else if !slices.Contains(PoolNames, c.Live) {
		add("live", "unknown pool %q (want blue or green)", c.Live)
	} else if p := c.Pools[c.Live]; p != nil && len(p.Replicas) == 0 {
		add("pools."+c.Live+".replicas", "the live pool %q needs at least one replica", c.Live)
	}
	switch c.Balancer {
	case "least_outstanding", "round_robin", "llm":
	default:
		add("balancer", "unknown balancer %q (want least_outstanding, round_robin or llm)", c.Balancer)
	}
	if !strings.HasPrefix(c.Health.Path, "/") {
		add("health.path", "%q must start with /", c.Health.Path)
	}
	if c.Health.Interval <= 0 {
		add("health.interval", "must be positive, got %s", c.Health.Interval)
	}
	if c.Health.Timeout <= 0 {
		add("health.timeout", "must be positive, got %s", c.Health.Timeout)
	}
	if c.Health.Rise < 1 {
		add("health.rise", "must be at least 1, got %d", c.Health.Rise)
	}
	if c.Health.Fall < 1 {
		add("health.fall", "must be at least 1, got %d", c.Health.Fall)
	}
	errs = append(errs, c.Health.Outlier.validate()...)
	if c.Proxy.Client != "cutover" && c.Proxy.Client != "net/http" {
		add("proxy.client", "unknown client %q (want cutover or net/http)", c.Proxy.Client)
	}
	if c.Proxy.MaxBodyBytes < 1 {
		add("proxy.max_body_bytes", "must be positive, got %d", c.Proxy.MaxBodyBytes)
	}
	if c.Proxy.MaxBufferedBytes < c.Proxy.MaxBodyBytes {
		add("proxy.max_buffered_bytes", "must be at least proxy.max_body_bytes (%d), got %d", c.Proxy.MaxBodyBytes, c.Proxy.MaxBufferedBytes)
	}
	if c.Proxy.ConnectTimeout <= 0 {
		add("proxy.connect_timeout", "must be positive, got %s", c.Proxy.ConnectTimeout)
	}
	for key, d := range map[string]Duration{
		"proxy.response_header_timeout": c.Proxy.ResponseHeaderTimeout,
		"proxy.idle_timeout":            c.Proxy.IdleTimeout,
		"proxy.timeout":                 c.Proxy.Timeout,
		"proxy.drain_timeout":           c.Proxy.DrainTimeout,
		"proxy.client_write_timeout":    c.Proxy.ClientWriteTimeout,
	} {
		if d < 0 {
			add(key, "must not be negative, got %s", d)
		}
	}
	errs = append(errs, c.Rollout.validate()...)
	errs = append(errs, validateHooks(c.Hooks)...)
	errs = append(errs, c.validateDriver()...)
	errs = append(errs, c.validateValidation()...)
	errs = append(errs, c.validateRouting()...)
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateFleet()...)
	errs = append(errs, c.validateCapacity()...)
	errs = append(errs, c.Balancing.validate()...)
	errs = append(errs, c.validateTracing()...)
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return strings.Compare(a.Key, b.Key) })
	return &Error{Fields: errs}
}

// validate checks the outlier detection keys.
func (o *Outlier) validate() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "health.outlier." + key, Msg: fmt.Sprintf(format, args...)})
	}
	if o.Consecutive5xx < 0 || o.Consecutive5xx == 1 {
		add("consecutive_5xx", "must be 0 (off) or at least 2 (one failed request never ejects a replica), got %d", o.Consecutive5xx)
	}
	if !(o.FailureRate >= 0 && o.FailureRate <= 1) {
		add("failure_rate", "must be between 0 (off) and 1, got %v", o.FailureRate)
	}
	if o.Interval <= 0 {
		add("interval", "must be positive, got %s", o.Interval)
	}
	if o.MinimumRequests < 1 {
		add("minimum_requests", "must be at least 1, got %d", o.MinimumRequests)
	}
	if o.BaseEjectionTime <= 0 {
		add("base_ejection_time", "must be positive, got %s", o.BaseEjectionTime)
	}
	if o.MaxEjectionTime < o.BaseEjectionTime {
		add("max_ejection_time", "must be at least base_ejection_time (%s), got %s", o.BaseEjectionTime, o.MaxEjectionTime)
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		add("max_ejection_percent", "must be between 0 (off) and 100, got %d", o.MaxEjectionPercent)
	}
	return errs
}

// NormalizeReplicaURL checks that s is an http(s) base URL with a host and
// no query, and returns it without a trailing slash.
func NormalizeReplicaURL(s string) (string, error) { return pool.NormalizeURL(s) }

// AdminToken returns the admin bearer token: CUTOVER_ADMIN_TOKEN when set,
// else the contents of admin.token_file. It fails when neither gives a
// token, saying how to set one.
func (c *Config) AdminToken() (string, error) {
	if t, err := EnvToken(); t != "" || err != nil {
		return t, err
	}
	if c.Admin.TokenFile != "" {
		t, err := secret.ReadFile(c.Admin.TokenFile)
		if err != nil {
			return "", fmt.Errorf("admin.token_file: %w", err)
		}
		return t, nil
	}
	return "", fmt.Errorf("no admin token: set %s=<secret> or admin.token_file in the config (e.g. `openssl rand -hex 32 > /etc/cutover/token`)", TokenEnv)
}

// EnvToken is the admin token in TokenEnv without surrounding blanks, ""
// when unset; one with a control byte is an error naming TokenEnv.
func EnvToken() (string, error) {
	t := strings.TrimSpace(os.Getenv(TokenEnv))
	if err := secret.Check(t); err != nil {
		return "", fmt.Errorf("%s %w", TokenEnv, err)
	}
	return t, nil
}

// TokenEnv is the environment variable holding the admin token.
const TokenEnv = "CUTOVER_ADMIN_TOKEN"

// MaxRetention is the longest retention of an old pool.
const MaxRetention = 24 * time.Hour

// KeptWhenShrunk is how many replicas of the old pool retention_mode
// shrink keeps: rollout.shrink_to, 1 when unset.
func (r *Rollout) KeptWhenShrunk() int {
	if r.ShrinkTo == nil {
		return 1
	}
	return *r.ShrinkTo
}

func (r *Rollout) validate() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if r.MinReady < 0 {
		add("rollout.min_ready", "must not be negative, got %d", r.MinReady)
	}
	if r.ProgressDeadline <= 0 {
		add("rollout.progress_deadline", "must be positive, got %s", r.ProgressDeadline)
	}
	if r.AutoPromoteAfter < 0 {
		add("rollout.auto_promote_after", "must not be negative, got %s", r.AutoPromoteAfter)
	}
	if r.Retention < 0 || r.Retention.D() > MaxRetention {
		add("rollout.retention", "must be between 0s and %s, got %s", MaxRetention, r.Retention)
	}
	switch r.RetentionMode {
	case "keep", "sleep", "shrink", "stop":
	default:
		add("rollout.retention_mode", "want keep, sleep, shrink or stop, got %q", r.RetentionMode)
	}
	if r.ShrinkTo != nil {
		switch {
		case r.RetentionMode != "shrink":
			add("rollout.shrink_to", "only meaningful with rollout.retention_mode shrink (it is %s): remove it, or set retention_mode: shrink", r.RetentionMode)
		case *r.ShrinkTo < 1:
			add("rollout.shrink_to", "must be at least 1 (replicas of the old pool kept for rollback; retention_mode stop keeps none), got %d", *r.ShrinkTo)
		}
	}
	if r.WakeTimeout <= 0 {
		add("rollout.wake_timeout", "must be positive, got %s", r.WakeTimeout)
	}
	if r.DrainTimeout < 0 {
		add("rollout.drain_timeout", "must not be negative, got %s", r.DrainTimeout)
	}
	if r.Warmup.Timeout <= 0 {
		add("rollout.warmup.timeout", "must be positive, got %s", r.Warmup.Timeout)
	}
	if r.Preflight.Timeout <= 0 {
		add("rollout.preflight.timeout", "must be positive, got %s", r.Preflight.Timeout)
	}
	errs = append(errs, r.validateCanary()...)
	for i, w := range r.Warmup.Requests {
		key := fmt.Sprintf("rollout.warmup.requests[%d]", i)
		if strings.TrimSpace(w.Prompt) == "" {
			add(key+".prompt", "must not be empty")
		}
		if w.MaxTokens < 0 {
			add(key+".max_tokens", "must not be negative, got %d", w.MaxTokens)
		}
	}
	return errs
}

func validateHooks(hooks map[string][]Hook) []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for event, list := range hooks {
		if !slices.Contains(hook.Events, event) {
			add("hooks."+event, "unknown hook event %q (known: %s)", event, strings.Join(hook.Events, ", "))
			continue
		}
		for i, h := range list {
			key := fmt.Sprintf("hooks.%s[%d]", event, i)
			switch {
			case len(h.Command) == 0 && h.Webhook == "":
				add(key, "needs command (an argv list) or webhook (a URL)")
			case len(h.Command) > 0 && h.Webhook != "":
				add(key, "has both command and webhook; give one")
			case len(h.Command) > 0 && strings.TrimSpace(h.Command[0]) == "":
				add(key+".command[0]", "the program must not be empty")
			case h.Webhook != "":
				u, err := url.Parse(h.Webhook)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					add(key+".webhook", "%q is not an http(s) URL", h.Webhook)
				}
			}
			if h.Timeout < 0 {
				add(key+".timeout", "must not be negative, got %s", h.Timeout)
			}
		}
	}
	return errs
}

// HookSpecs converts the configured hooks of each event for the runner.
func (c *Config) HookSpecs() map[string][]hook.Spec {
	out := map[string][]hook.Spec{}
	for event, list := range c.Hooks {
		for _, h := range list {
			out[event] = append(out[event], hook.Spec{Command: h.Command, Webhook: h.Webhook, Timeout: h.Timeout.D()})
		}
	}
	return out
}
