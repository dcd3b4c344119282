package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Drivers are the values driver accepts.
var Drivers = []string{"builtin", "nginx", "haproxy"}

// NginxDriver configures driver: nginx. cutover owns one file that nginx
// includes inside its http block; every routing change rewrites it, tests
// it (TestCommand), reloads nginx (ReloadCommand) and checks through nginx
// (VerifyURL) that new requests reach the new pool.
type NginxDriver struct {
	// UpstreamFile is the file cutover writes: an absolute path, included
	// by nginx.conf inside http {}. Required.
	UpstreamFile string `yaml:"upstream_file"`
	// UpstreamName names the upstream block (proxy_pass
	// $NAME_scheme://NAME) and prefixes the variables the file defines:
	// $NAME_pool (the live pool, for the X-Cutover-Pool header) and
	// $NAME_scheme (http or https). Default cutover.
	UpstreamName string `yaml:"upstream_name"`
	// Keepalive is how many idle connections to the replicas each nginx
	// worker keeps (the upstream keepalive directive). Default 32; 0 turns
	// upstream keep-alive off.
	Keepalive int `yaml:"keepalive"`
	// UpstreamDirectives are extra directives written inside the upstream
	// block before keepalive, such as "least_conn" or
	// "keepalive_timeout 120s". Default none.
	UpstreamDirectives []string `yaml:"upstream_directives"`
	// TestCommand is the argv that checks the configuration with the new
	// file. Default [nginx, -t].
	TestCommand []string `yaml:"test_command"`
	// ReloadCommand is the argv that makes nginx load it. Default
	// [nginx, -s, reload].
	ReloadCommand []string `yaml:"reload_command"`
	// CommandTimeout bounds each run of TestCommand and ReloadCommand.
	// Default 30s.
	CommandTimeout Duration `yaml:"command_timeout"`
	// VerifyURL is requested through nginx after a reload: its response
	// must carry X-Cutover-Pool with the new pool's name. Required.
	VerifyURL string `yaml:"verify_url"`
	// VerifyTimeout bounds that check; past it the change is undone.
	// Default 10s.
	VerifyTimeout Duration `yaml:"verify_timeout"`
}

// HAProxyDriver configures driver: haproxy. Both pools are HAProxy
// backends; a switch is one `set map` on the admin socket (and a rewrite
// of the map file, so that a restart keeps it), then a check through
// HAProxy (VerifyURL). Replicas that fail health checks are put in
// maintenance with `set server ... state maint`.
type HAProxyDriver struct {
	// AdminSocket is the path of HAProxy's stats socket, declared with
	// `stats socket PATH level admin`. Required.
	AdminSocket string `yaml:"admin_socket"`
	// MapFile is the map that use_backend consults, spelled exactly as in
	// haproxy.cfg's map() converter (it names the map on the admin socket
	// too). cutover owns the file. Required.
	MapFile string `yaml:"map_file"`
	// MapKey is the key whose value is the live backend. Default live.
	MapKey string `yaml:"map_key"`
	// Backends maps each pool to its HAProxy backend. Default blue: blue,
	// green: green, so that `%[be_name]` is the pool's name.
	Backends map[string]string `yaml:"backends"`
	// ConfigFile is the haproxy.cfg HAProxy runs, read once at start to
	// warn when `option http-no-delay` is missing. Empty: no check.
	ConfigFile string `yaml:"config_file"`
	// SocketTimeout bounds one admin socket command. Default 5s.
	SocketTimeout Duration `yaml:"socket_timeout"`
	// VerifyURL is requested through HAProxy after a switch: its response
	// must carry X-Cutover-Pool with the new backend's name. Required.
	VerifyURL string `yaml:"verify_url"`
	// VerifyTimeout bounds that check; past it the change is undone.
	// Default 10s.
	VerifyTimeout Duration `yaml:"verify_timeout"`
}

func defaultNginx() NginxDriver {
	return NginxDriver{
		UpstreamName:   "cutover",
		Keepalive:      32,
		TestCommand:    []string{"nginx", "-t"},
		ReloadCommand:  []string{"nginx", "-s", "reload"},
		CommandTimeout: Duration(30 * time.Second),
		VerifyTimeout:  Duration(10 * time.Second),
	}
}

func defaultHAProxy() HAProxyDriver {
	return HAProxyDriver{
		MapKey:        "live",
		Backends:      map[string]string{"blue": "blue", "green": "green"},
		SocketTimeout: Duration(5 * time.Second),
		VerifyTimeout: Duration(10 * time.Second),
	}
}

// nginxName is what an upstream name must look like: it also prefixes
// nginx variable names.
var nginxName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *Config) validateDriver() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(Drivers, c.Driver) {
		add("driver", "unknown driver %q (want %s)", c.Driver, strings.Join(Drivers, ", "))
		return errs
	}
	if c.Driver != "nginx" && !reflect.DeepEqual(c.Nginx, defaultNginx()) {
		add("nginx", "is set but driver is %s: add `driver: nginx` or remove the nginx section", c.Driver)
	}
	if c.Driver != "haproxy" && !reflect.DeepEqual(c.HAProxy, defaultHAProxy()) {
		add("haproxy", "is set but driver is %s: add `driver: haproxy` or remove the haproxy section", c.Driver)
	}
	if c.Driver == "builtin" {
		return errs
	}
	if c.ModelName != "" {
		add("model_name", "cannot be used with driver %s: the load balancer forwards request bodies unchanged, so it cannot rewrite `model` to the live pool's id; "+
			"remove model_name (or give both versions one served name, e.g. vLLM --served-model-name, and use it as pools.<pool>.model), or use driver builtin", c.Driver)
	}
	for _, name := range PoolNames {
		p := c.Pools[name]
		if p == nil {
			continue
		}
		schemes := map[string]bool{}
		for i, r := range p.Replicas {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				continue // reported by Validate
			}
			schemes[u.Scheme] = true
			if strings.Trim(u.Path, "/") != "" {
				add(fmt.Sprintf("pools.%s.replicas[%d]", name, i), "%q has a path prefix, which driver %s cannot route to (an upstream server is host:port only); serve the API at the root", r, c.Driver)
			}
		}
		if c.Driver == "nginx" && len(schemes) > 1 {
			add("pools."+name+".replicas", "mixes http and https replicas: driver nginx proxies one pool with one scheme")
		}
	}
	switch c.Driver {
	case "nginx":
		errs = append(errs, c.Nginx.validate(c.Listen)...)
	case "haproxy":
		errs = append(errs, c.HAProxy.validate(c.Listen)...)
	}
	return errs
}

func (n *NginxDriver) validate(listen string) []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "nginx." + key, Msg: fmt.Sprintf(format, args...)})
	}
	checkAbsPath(add, "upstream_file", n.UpstreamFile, "the file cutover writes and nginx.conf includes inside http {}")
	if fi, err := os.Stat(n.UpstreamFile); n.UpstreamFile != "" && (strings.HasSuffix(n.UpstreamFile, "/") || err == nil && fi.IsDir()) {
		add("upstream_file", "%q is a directory: name the file cutover writes in it", n.UpstreamFile)
	}
	if !nginxName.MatchString(n.UpstreamName) {
		add("upstream_name", "%q must be letters, digits and underscores (it names the upstream and prefixes nginx variables)", n.UpstreamName)
	}
	if n.Keepalive < 0 {
		add("keepalive", "must not be negative, got %d (0 turns upstream keep-alive off)", n.Keepalive)
	}
	for i, d := range n.UpstreamDirectives {
		d = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(d), ";"))
		switch {
		case d == "":
			add(fmt.Sprintf("upstream_directives[%d]", i), "must not be empty")
		case strings.ContainsAny(d, "{};#\n\r"):
			add(fmt.Sprintf("upstream_directives[%d]", i), "%q must be one directive without braces, comments or inner semicolons", d)
		}
	}
	checkArgv(add, "test_command", n.TestCommand)
	checkArgv(add, "reload_command", n.ReloadCommand)
	checkPositive(add, "command_timeout", n.CommandTimeout)
	checkVerify(add, n.VerifyURL, n.VerifyTimeout, listen, "nginx")
	return errs
}

func (h *HAProxyDriver) validate(listen string) []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "haproxy." + key, Msg: fmt.Sprintf(format, args...)})
	}
	checkAbsPath(add, "admin_socket", h.AdminSocket, "HAProxy's `stats socket PATH level admin`")
	checkAbsPath(add, "map_file", h.MapFile, "the map file haproxy.cfg's use_backend consults, spelled as there")
	if strings.ContainsAny(h.MapFile, " \t\r\n,()"+cliSpecial) {
		add("map_file", "%q: HAProxy cannot name a map whose path has spaces, commas, parentheses or any of %s (its Runtime API reads them as syntax)", h.MapFile, cliSpecial)
	}
	if h.MapKey == "" || strings.ContainsAny(h.MapKey, " \t\r\n"+cliSpecial) {
		add("map_key", "%q must be one word without any of %s", h.MapKey, cliSpecial)
	}
	seen := map[string]string{}
	for _, pool := range slices.Sorted(maps.Keys(h.Backends)) {
		be := h.Backends[pool]
		if !slices.Contains(PoolNames, pool) {
			add("backends."+pool, "unknown pool %q (the pools are blue and green)", pool)
			continue
		}
		if !haproxyName.MatchString(be) {
			add("backends."+pool, "%q is not a backend name (HAProxy's names are letters, digits, '-', '_', '.' and ':')", be)
			continue
		}
		if other, dup := seen[be]; dup {
			add("backends."+pool, "backend %q is also pool %s's: each pool needs its own backend", be, other)
		}
		seen[be] = pool
	}
	for _, pool := range PoolNames {
		if _, ok := h.Backends[pool]; !ok {
			add("backends."+pool, "missing: name pool %s's backend", pool)
		}
	}
	if h.ConfigFile != "" && !filepath.IsAbs(h.ConfigFile) {
		add("config_file", "%q must be an absolute path", h.ConfigFile)
	}
	checkPositive(add, "socket_timeout", h.SocketTimeout)
	checkVerify(add, h.VerifyURL, h.VerifyTimeout, listen, "haproxy")
	return errs
}

// cliSpecial are the bytes HAProxy's Runtime API reads as syntax in a
// command line (';' separates two commands: a map file named "x;shutdown
// frontend f" would run the second), so no name cutover sends it may hold
// them.
const cliSpecial = ";\\'\"#"

// haproxyName is what HAProxy accepts as a proxy (backend) name.
var haproxyName = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

type addFunc func(key, format string, args ...any)

func checkAbsPath(add addFunc, key, v, what string) {
	switch {
	case v == "":
		add(key, "must be set: %s", what)
	case !filepath.IsAbs(v):
		add(key, "%q must be an absolute path", v)
	}
}

func checkArgv(add addFunc, key string, argv []string) {
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		add(key, "must be an argv list with a program, such as [nginx, -t]")
	}
}

func checkPositive(add addFunc, key string, d Duration) {
	if d <= 0 {
		add(key, "must be positive, got %s", d)
	}
}

// checkVerify checks a verify URL: http(s), and not cutover's own traffic
// listener, whose answers carry X-Cutover-Pool without the load balancer.
func checkVerify(add addFunc, raw string, timeout Duration, listen, lb string) {
	checkPositive(add, "verify_timeout", timeout)
	if raw == "" {
		add("verify_url", "must be set: a URL served through %s (e.g. http://127.0.0.1/health) whose answer carries X-Cutover-Pool", lb)
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("verify_url", "%q is not an http(s) URL", raw)
		return
	}
	if sameAddr(u, listen) {
		add("verify_url", "%q is cutover's own traffic listener (listen: %s); it must go through %s", raw, listen, lb)
	}
}

// sameAddr reports whether u reaches the listener on listen, compared as
// listeners are (listenClash).
func sameAddr(u *url.URL, listen string) bool {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return listenClash(net.JoinHostPort(u.Hostname(), port), listen)
}
