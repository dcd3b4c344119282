package main

// The processes under test: simulated backends (cutover mock-llm) and the
// three proxies in front of them (nginx, HAProxy, cutover), each configured
// like for like and started on loopback ports of its own.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// Target names, in the order every scenario interleaves them.
const (
	targetDirect  = "direct"
	targetNginx   = "nginx"
	targetHAProxy = "haproxy"
	targetCutover = "cutover"
	// targetCutoverRewrite is cutover with model_name set, as users run
	// it: clients send clientModel and the gateway rewrites each body's
	// model to the pool's id (saturation only).
	targetCutoverRewrite = "cutover-rewrite"
)

// benchModel is the model id every simulated backend serves and every
// request names, so that no proxy has to rewrite a body.
const benchModel = "bench"

// readyTimeout bounds the wait for a started process to answer.
const readyTimeout = 20 * time.Second

// env is what every scenario shares: the tools, the run directory and the
// fair share of CPU each proxy gets.
type env struct {
	dir     string // run directory: configs, logs, pid files
	cutover string // the cutover binary under test
	nginx   string
	haproxy string
	wrk     string
	// workers is the number of nginx worker processes, HAProxy threads
	// (nbthread) and cutover's GOMAXPROCS: the same for every proxy.
	workers int
	// nofile is the RLIMIT_NOFILE children inherit.
	nofile uint64
	root   bool // the harness runs as root (nginx then needs "user root")
	logf   func(format string, args ...any)
}

// target is one way to reach the backends: directly or through a proxy.
type target struct {
	name string
	addr string // host:port of the traffic listener
	// grp holds the proxy's processes for CPU and RSS; nil for direct.
	grp *group
	// switchTo makes pool ("blue" or "green") receive new requests; nil when
	// the target has no pools (direct, and the proxies outside scenario 4).
	switchTo func(ctx context.Context, pool string) error
	// admin is cutover's admin API client; nil for the others.
	admin *api.Client
}

// pools are the backends a proxy fronts: blue is live at start; green, when
// set, is the standby that a switch makes live.
type pools struct {
	blue, green string
	// blueMore are further replicas of blue (the balancing scenario): with
	// them nginx balances with least_conn and HAProxy with leastconn.
	blueMore []string
}

// blues is every replica of blue.
func (p pools) blues() []string { return append([]string{p.blue}, p.blueMore...) }

// mockOpts are the flags of one simulated backend.
type mockOpts struct {
	ttft, itl time.Duration
	tokens    int
	// otherBox runs the mock at the lowest CPU priority (SCHED_IDLE, via
	// chrt): it stands for a backend on machines of its own, whose work
	// must not be counted against the proxy in front of another backend.
	otherBox bool
	// args are further mock-llm flags (the balancing scenario's queueing).
	args []string
}

// startMock starts `cutover mock-llm` serving benchModel and waits until it
// answers /health.
func (e *env) startMock(ctx context.Context, ps *procSet, name string, o mockOpts) (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	argv := []string{e.cutover, "mock-llm", "--listen", addr, "--model", benchModel,
		"--ttft", o.ttft.String(), "--itl", o.itl.String()}
	if o.tokens > 0 {
		argv = append(argv, "--tokens", strconv.Itoa(o.tokens))
	}
	argv = append(argv, o.args...)
	if o.otherBox {
		argv = append(idlePriority(), argv...)
	}
	p, err := startProc(e.dir, name, argv, nil)
	if err != nil {
		return "", err
	}
	ps.add(p)
	if err := waitReady(ctx, p, e.dir, func(c *http.Client) error { return getOK(ctx, c, "http://"+addr+"/health") }); err != nil {
		return "", err
	}
	return addr, nil
}

// startTargets starts nginx, HAProxy and cutover in front of up (in
// parallel) and returns the direct target followed by the three proxies.
// maxConns is the number of client connections each proxy must hold.
func (e *env) startTargets(ctx context.Context, ps *procSet, tag string, up pools, maxConns int) ([]*target, error) {
	type res struct {
		t   *target
		err error
	}
	starters := []func() (*target, error){
		func() (*target, error) { return e.startNginx(ctx, ps, "nginx-"+tag, up, maxConns) },
		func() (*target, error) { return e.startHAProxy(ctx, ps, "haproxy-"+tag, up, maxConns) },
		func() (*target, error) { return e.startCutover(ctx, ps, "cutover-"+tag, up, "") },
	}
	out := make([]chan res, len(starters))
	for i, start := range starters {
		out[i] = make(chan res, 1)
		go func() { t, err := start(); out[i] <- res{t, err} }()
	}
	ts := []*target{{name: targetDirect, addr: up.blue}}
	var firstErr error
	for _, ch := range out {
		r := <-ch
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		ts = append(ts, r.t)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return ts, nil
}

// nginxConf is nginx.conf: the seed's proxy settings (HTTP/1.1 with an empty
// Connection header, upstream keepalive, proxy_buffering off), no access
// log, nothing else on the path.
var nginxConf = template.Must(template.New("nginx").Parse(`# Written by the cutover benchmark harness (bench/).
{{if .Root}}user root;
{{end}}worker_processes {{.Workers}};
worker_rlimit_nofile {{.NoFile}};
daemon off;
master_process on;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;

events {
    worker_connections {{.WorkerConns}};
}

http {
    access_log off;
    client_body_temp_path {{.Dir}}/tmp-body;
    proxy_temp_path {{.Dir}}/tmp-proxy;
    fastcgi_temp_path {{.Dir}}/tmp-fastcgi;
    uwsgi_temp_path {{.Dir}}/tmp-uwsgi;
    scgi_temp_path {{.Dir}}/tmp-scgi;
    # The default (1000) closes a client connection every 1000 requests;
    # the other proxies never do.
    keepalive_requests 1000000;
    include {{.Dir}}/upstream.conf;

    server {
        listen {{.Listen}} backlog=4096;
        client_max_body_size 32m;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 15m;
            proxy_send_timeout 15m;
        }
    }
}
`))

// nginxUpstream is the include file the seed's manual switch rewrites.
// keepalive is per worker and sized like the other proxies' idle pools
// (the seed's example has 32, which would make nginx dial most of 200
// concurrent streams' upstream connections anew). With several servers,
// least_conn gets a shared-memory zone: without one each worker counts
// only its own connections, and with two workers least_conn balances on
// half the picture (HAProxy's threads and cutover share their counts).
var nginxUpstream = template.Must(template.New("upstream").Parse(`upstream backend {
{{- if gt (len .) 1}}
    zone backend 1m;
    least_conn;
{{- end}}
{{- range .}}
    server {{.}};
{{- end}}
    keepalive 256;
    keepalive_requests 1000000;
}
`))

// startNginx starts nginx in the foreground (daemon off; its master is the
// harness's child) with its own prefix, pid file and port.
func (e *env) startNginx(ctx context.Context, ps *procSet, name string, up pools, maxConns int) (*target, error) {
	dir, addr, err := e.prepare(name)
	if err != nil {
		return nil, err
	}
	// Any worker may end up holding every client connection and its
	// upstream connection, within the file limit it inherits.
	noFile := int(min(e.nofile, 1<<20))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := render(nginxConf, confPath, map[string]any{
		"Root": e.root, "Workers": e.workers, "NoFile": noFile,
		"Dir": dir, "WorkerConns": min(2*maxConns+1024, noFile), "Listen": addr,
	}); err != nil {
		return nil, err
	}
	if err := writeNginxUpstream(dir, up.blues()...); err != nil {
		return nil, err
	}
	base := []string{e.nginx, "-p", dir + "/", "-c", confPath, "-e", filepath.Join(dir, "error.log")}
	p, err := startProc(e.dir, name, base, nil)
	if err != nil {
		return nil, err
	}
	p.stopFn = func() error {
		_, err := runTool(context.Background(), 5*time.Second, append(base, "-s", "stop")...)
		return err
	}
	ps.add(p)
	t := &target{name: targetNginx, addr: addr, grp: &group{root: p.pid(), withChildren: true}}
	if up.green != "" {
		addrs := map[string]string{"blue": up.blue, "green": up.green}
		t.switchTo = func(ctx context.Context, pool string) error {
			// The seed's manual switch: rewrite the include, reload.
			if err := writeNginxUpstream(dir, addrs[pool]); err != nil {
				return err
			}
			_, err := runTool(ctx, 10*time.Second, append(base, "-s", "reload")...)
			return err
		}
	}
	return t, waitReady(ctx, p, e.dir, func(c *http.Client) error { return probeChat(ctx, c, addr) })
}

// writeNginxUpstream replaces dir/upstream.conf atomically: one server per
// backend, balanced with least_conn when there are several.
func writeNginxUpstream(dir string, backends ...string) error {
	return render(nginxUpstream, filepath.Join(dir, "upstream.conf"), backends)
}

// prepare creates the directory of the process name and picks a free
// loopback address for its traffic.
func (e *env) prepare(name string) (dir, addr string, err error) {
	dir = filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("%s: %w", name, err)
	}
	addr, err = freeAddr()
	return dir, addr, err
}

// render executes tmpl with data into path, replacing it atomically.
func render(tmpl *template.Template, path string, data any) error {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	return writeAtomic(path, b.Bytes())
}

// haproxyConf is haproxy.cfg: HTTP mode, keep-alive to the servers with
// http-reuse always, option http-no-delay, no log.
var haproxyConf = template.Must(template.New("haproxy").Funcs(template.FuncMap{"inc": func(i int) int { return i + 1 }}).Parse(`# Written by the cutover benchmark harness (bench/).
global
    nbthread {{.Workers}}
    maxconn {{.MaxConn}}
    pidfile {{.Dir}}/haproxy.pid
    stats socket {{.Dir}}/admin.sock mode 600 level admin

defaults
    mode http
    option http-no-delay
    http-reuse always
    maxconn {{.MaxConn}}
    timeout connect 5s
    timeout http-request 30s
    timeout client 15m
    timeout server 15m
    timeout http-keep-alive 60s

frontend fe
    bind {{.Listen}} backlog 4096
{{- if .Green}}
    use_backend %[str(live),map({{.Dir}}/pool.map,blue)]
{{- else}}
    default_backend blue
{{- end}}

backend blue
{{- if gt (len .Blues) 1}}
    balance leastconn
{{- end}}
{{- range $i, $b := .Blues}}
    server blue{{inc $i}} {{$b}}
{{- end}}
{{- if .Green}}

backend green
    server green1 {{.Green}}
{{- end}}
`))

// startHAProxy starts HAProxy in the foreground (-db) with its own pid
// file, admin socket and port. With a green pool, the frontend picks the
// backend from a map that a Runtime API "set map" switches.
func (e *env) startHAProxy(ctx context.Context, ps *procSet, name string, up pools, maxConns int) (*target, error) {
	dir, addr, err := e.prepare(name)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "haproxy.cfg")
	if err := render(haproxyConf, confPath, map[string]any{
		// HAProxy needs two descriptors per connection it relays.
		"Workers": e.workers, "MaxConn": min(maxConns+1024, int(min(e.nofile, 1<<20)-fdReserve)/2), "Dir": dir,
		"Listen": addr, "Blues": up.blues(), "Green": up.green,
	}); err != nil {
		return nil, err
	}
	mapPath := filepath.Join(dir, "pool.map")
	if err := os.WriteFile(mapPath, []byte("live blue\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write pool.map: %w", err)
	}
	p, err := startProc(e.dir, name, []string{e.haproxy, "-db", "-f", confPath}, nil)
	if err != nil {
		return nil, err
	}
	ps.add(p) // SIGTERM: HAProxy's hard stop
	t := &target{name: targetHAProxy, addr: addr, grp: &group{root: p.pid()}}
	if up.green != "" {
		sock := filepath.Join(dir, "admin.sock")
		t.switchTo = func(ctx context.Context, pool string) error {
			out, err := haproxyCommand(ctx, sock, "set map "+mapPath+" live "+pool)
			if err == nil && strings.TrimSpace(out) != "" {
				err = fmt.Errorf("haproxy: set map: %s", strings.TrimSpace(out))
			}
			return err
		}
	}
	return t, waitReady(ctx, p, e.dir, func(c *http.Client) error { return probeChat(ctx, c, addr) })
}

// haproxyCommand sends one Runtime API command and returns the answer.
func haproxyCommand(ctx context.Context, sock, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return "", fmt.Errorf("haproxy admin socket %s: %w", sock, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy admin socket: send %q: %w", cmd, err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("haproxy admin socket: answer to %q: %w", cmd, err)
	}
	return string(b), nil
}

// cutoverConf is cutover's config: the pools, no access log, quick health
// checks, and extra keys (scenario 5's validation) appended.
var cutoverConf = template.Must(template.New("cutover").Parse(`# Written by the cutover benchmark harness (bench/).
listen: {{.Listen}}
admin:
  listen: {{.Admin}}
state_dir: {{.Dir}}/state
proxy:
  access_log: false
  drain_timeout: 1s
health:
  interval: 1s
  rise: 1
pools:
  blue:
    model: {{.Model}}
    replicas: [{{range $i, $b := .Blues}}{{if $i}}, {{end}}http://{{$b}}{{end}}]
  green:
    model: {{.Model}}
    replicas: [{{if .Green}}http://{{.Green}}{{end}}]
{{.Extra}}`))

// startCutover starts `cutover serve` with GOMAXPROCS set to the fair share,
// a fresh state directory and a random admin token.
func (e *env) startCutover(ctx context.Context, ps *procSet, name string, up pools, extra string) (*target, error) {
	dir, addr, err := e.prepare(name)
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "cutover.yaml")
	if err := render(cutoverConf, confPath, map[string]any{
		"Listen": addr, "Admin": admin, "Dir": dir, "Model": benchModel,
		"Blues": up.blues(), "Green": up.green, "Extra": extra,
	}); err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	p, err := startProc(e.dir, name, []string{e.cutover, "serve", "--config", confPath},
		[]string{"CUTOVER_ADMIN_TOKEN=" + token, "GOMAXPROCS=" + strconv.Itoa(e.workers)})
	if err != nil {
		return nil, err
	}
	ps.add(p) // SIGTERM: drains for proxy.drain_timeout, then exits
	// With its children: the shadow helper's CPU is cutover's too.
	t := &target{name: targetCutover, addr: addr, grp: &group{root: p.pid(), withChildren: true},
		admin: &api.Client{BaseURL: "http://" + admin, Token: token, Actor: "bench"}}
	if up.green != "" {
		live := "blue"
		t.switchTo = func(ctx context.Context, pool string) error {
			if pool == live {
				return nil
			}
			if _, err := t.admin.Promote(ctx); err != nil {
				return fmt.Errorf("cutover promote to %s: %w", pool, err)
			}
			live = pool
			return nil
		}
	}
	return t, waitReady(ctx, p, e.dir, func(c *http.Client) error { return probeChat(ctx, c, addr) })
}

// waitReady polls check until it succeeds, the process exits (an error with
// the end of its log) or readyTimeout passes.
func waitReady(ctx context.Context, p *proc, dir string, check func(*http.Client) error) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(readyTimeout)
	for {
		err := check(c)
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready (%v): %s", p.name, p.err, p.logTail(dir))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", p.name, readyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting until ready: %w", p.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fetch sends a request (a POST carries body as JSON) and returns the
// answer's body; any status but 200 is an error.
func fetch(ctx context.Context, c *http.Client, method, url, body string) ([]byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err // names method and URL already
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("%s %s: HTTP %d", method, url, resp.StatusCode)
	}
	return b, nil
}

// getOK requires GET url to answer 200.
func getOK(ctx context.Context, c *http.Client, url string) error {
	_, err := fetch(ctx, c, http.MethodGet, url, "")
	return err
}

// clientModel is the model_name clients of targetCutoverRewrite send.
const clientModel = "llm"

// chatBody is a small non-streamed chat completion of maxTokens tokens.
func chatBody(maxTokens int, stream bool, prompt string) string {
	return chatBodyFor(benchModel, maxTokens, stream, prompt)
}

// chatBodyFor is chatBody naming model.
func chatBodyFor(model string, maxTokens int, stream bool, prompt string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":` + strconv.Quote(prompt) +
		`}],"max_tokens":` + strconv.Itoa(maxTokens) + `,"stream":` + strconv.FormatBool(stream) + `}`
}

// probeChat requires a one-token chat completion through addr to answer 200.
func probeChat(ctx context.Context, c *http.Client, addr string) error {
	_, err := fetch(ctx, c, http.MethodPost, "http://"+addr+"/v1/chat/completions", chatBody(1, false, "ping"))
	return err
}

// writeAtomic replaces path with b through a rename, so that a reader (nginx
// reloading) never sees half a file.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// roundOrder is the order a measured round runs ts in: direct first (the
// others are compared with it in the same round), then the proxies
// rotated by one each round, so that over the rounds none always runs
// first or last: the machine's speed drifts within a run, by 10 % and
// more over tens of seconds. A warm-up (round < 0) keeps ts's order.
func roundOrder(ts []*target, round int) []*target {
	if round < 0 {
		return ts
	}
	var out, rest []*target
	for _, t := range ts {
		if t.name == targetDirect {
			out = append(out, t)
		} else {
			rest = append(rest, t)
		}
	}
	if len(rest) == 0 {
		return out
	}
	k := round % len(rest)
	out = append(out, rest[k:]...)
	return append(out, rest[:k]...)
}
