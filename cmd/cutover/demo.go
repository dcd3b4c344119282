package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/store"
)

// demoModels are the two versions the demo's pools serve.
var demoModels = map[string]string{
	"blue":  "llama-3.1-8b-instruct",
	"green": "llama-3.1-8b-instruct-v2",
}

// demoNextModel is the version the demo's spare replicas serve, ready to
// be deployed.
const demoNextModel = "llama-3.1-8b-instruct-v3"

func newDemoCmd(g *globalFlags) *cobra.Command {
	var (
		listen, adminListen, stateDir string
		replicas                      int
		ttft, itl, retention          time.Duration
		traffic                       float64
		gateways                      int
		canary                        bool
		retentionMode                 string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run simulated blue and green vLLM pools behind a gateway, no config needed",
		Long: `Run a complete cutover on this machine: simulated vLLM replicas for blue
and green (different model ids), the gateway and the admin API, with state in
a fresh temporary directory, and one local cutover agent with 4 simulated
GPUs whose replicas are the simulator (vLLM's sleep mode on): a deploy
without --replica has it start replicas, a promotion puts the old pool to
sleep (--retention-mode; or keeps it, shrinks it to 1 replica, stops it), a
rollback wakes it, a retirement frees its GPUs.
It prints the URLs, the admin token and commands to try. Ctrl-C stops
everything cleanly (the agent's replicas too, unless --state-dir keeps them
for the next run).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicas < 1 {
				return &usageError{fmt.Errorf("--replicas must be at least 1, got %d", replicas)}
			}
			if gateways < 1 {
				return &usageError{fmt.Errorf("--gateways must be at least 1, got %d", gateways)}
			}
			if !slices.Contains(demoRetentionModes, retentionMode) {
				return &usageError{fmt.Errorf("--retention-mode: want %s, got %q", strings.Join(demoRetentionModes, ", "), retentionMode)}
			}
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cfg := config.Default()
			cfg.Listen, cfg.Admin.Listen = listen, adminListen
			cfg.ModelName = "llama"
			cfg.Health.Interval = config.Duration(time.Second)
			cfg.Health.Timeout = config.Duration(time.Second)
			cfg.Proxy.DrainTimeout = config.Duration(10 * time.Second)
			off, on := false, true
			cfg.Proxy.AccessLog = &off
			cfg.Proxy.ExposeReplica = &on // show which replica answered; production sets it false
			cfg.Pools = map[string]*config.Pool{}
			var servers []*http.Server
			defer func() {
				for _, s := range servers {
					_ = s.Close()
				}
			}()
			// With a state directory of the user's, the simulated
			// replicas take the addresses they had in the last run: the
			// pools a deployment saved in the state name them.
			var saved demoAddrs
			if stateDir != "" {
				saved = loadDemoAddrs(stateDir)
			}
			addrs := demoAddrs{}
			start := func(role, model string) (string, error) {
				mc := mockllm.Config{Model: model, TTFT: ttft, ITL: itl, Tokens: 48,
					Sleep: mockllm.SleepConfig{Enabled: true, DevMode: true, SleepDelay: 200 * time.Millisecond, WakeDelay: 500 * time.Millisecond}}
				var (
					url string
					srv *http.Server
					err error
				)
				if i := len(addrs[role]); i < len(saved[role]) {
					if url, srv, err = startMock(mc, saved[role][i]); err != nil {
						log.Warn("simulated replica: its address in the last run is taken; pools saved in the state that name it will not reach it",
							"address", saved[role][i], "error", err)
					}
				}
				switch {
				case srv != nil:
				case stateDir != "":
					// A port the kernel never hands to outgoing
					// connections, so that it is still free next time.
					url, srv, err = startMockSteady(mc)
				default:
					url, srv, err = startMock(mc, "127.0.0.1:0")
				}
				if err != nil {
					return "", err
				}
				servers = append(servers, srv)
				addrs[role] = append(addrs[role], strings.TrimPrefix(url, "http://"))
				return url, nil
			}
			for _, name := range config.PoolNames {
				// Each simulated replica stands for a one-GPU vLLM, for
				// the GPU accounting.
				p := &config.Pool{Model: demoModels[name], GPUsPerReplica: 1}
				for range replicas {
					url, err := start(name, p.Model)
					if err != nil {
						return err
					}
					p.Replicas = append(p.Replicas, url)
				}
				cfg.Pools[name] = p
			}
			// Two more replicas of a third version, in no pool yet: the
			// demo's `cutover deploy` puts them into the standby pool.
			var spare []string
			for range replicas {
				url, err := start("spare", demoNextModel)
				if err != nil {
					return err
				}
				spare = append(spare, url)
			}
			cfg.Rollout.Retention = config.Duration(retention)
			cfg.Rollout.RetentionMode = retentionMode
			if retentionMode == "shrink" {
				one := 1
				cfg.Rollout.ShrinkTo = &one
			}
			if canary {
				demoCanary(cfg)
			}
			if traffic > 0 {
				// With traffic flowing, deployments are validated against
				// it: every request is mirrored to the candidate.
				cfg.Validation.Shadow.Percent = 100
				cfg.Validation.Deadline = config.Duration(2 * time.Minute)
				cfg.Validation.Interval = config.Duration(2 * time.Second)
			}
			keepAgentReplicas := stateDir != "" // for the next run, which re-adopts them
			if stateDir == "" {
				dir, err := os.MkdirTemp("", "cutover-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				stateDir = dir
			}
			if dir, err := filepath.Abs(stateDir); err == nil {
				stateDir = dir // state_dir must be absolute; the flag is relative to here
			}
			cfg.StateDir = stateDir
			var agentAddr string
			if a := saved["agent"]; len(a) > 0 {
				agentAddr = a[0]
			}
			da, err := startDemoAgent(cfg, stateDir, agentAddr, replicas, ttft, itl, log)
			if err != nil {
				return err
			}
			defer da.stop(keepAgentReplicas)
			addrs["agent"] = []string{da.addr}
			if live := persistedLive(stateDir); live != "" {
				// The demo's config is not the user's: its live pool
				// follows the state, so a restart does not warn that
				// they differ.
				cfg.Live = live
			}
			if err := saveDemoAddrs(stateDir, addrs); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return &usageError{err}
			}
			stopEtcd, err := demoFleetEtcd(cfg, gateways, stateDir)
			if err != nil {
				return err
			}
			defer stopEtcd()
			token := strings.TrimSpace(os.Getenv(config.TokenEnv))
			if token == "" {
				token = randomToken()
			}
			gw, err := gateway.New(ctx, cfg, token, log)
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w: the demo listens on --listen %s and --admin-listen %s; give free ports with those flags", err, cfg.Listen, cfg.Admin.Listen)
			}
			if err != nil {
				return err
			}
			var simulated []string
			for role, list := range addrs {
				if role == "agent" {
					continue
				}
				for _, a := range list {
					simulated = append(simulated, "http://"+a)
				}
			}
			printDemo(cmd.OutOrStdout(), gw, cfg, token, spare, simulated)
			if traffic > 0 {
				go demoTraffic(ctx, "http://"+gw.TrafficAddr(), traffic)
			}
			if gateways > 1 {
				return runDemoFleet(ctx, cmd.OutOrStdout(), gw, cfg, gateways, token, log)
			}
			return gw.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "client traffic address")
	f.StringVar(&adminListen, "admin-listen", "127.0.0.1:8081", "admin API address")
	f.StringVar(&stateDir, "state-dir", "", "keep state here across runs, the simulated replicas' addresses too (default: a temporary directory removed on exit)")
	f.IntVar(&replicas, "replicas", 2, "simulated replicas per pool")
	f.IntVar(&gateways, "gateways", 1, "gateways to run; above 1 they share one state in an embedded single-member etcd (a fleet) and print their ports")
	f.DurationVar(&ttft, "ttft", 120*time.Millisecond, "simulated time to first token")
	f.DurationVar(&itl, "itl", 40*time.Millisecond, "simulated time between tokens")
	f.Float64Var(&traffic, "traffic", 4, "simulated client requests per second (0: none); with traffic, deployments are validated with shadow copies")
	f.DurationVar(&retention, "retention", 10*time.Minute, "how long the old pool is kept after a deployment's promotion")
	f.StringVar(&retentionMode, "retention-mode", "sleep", "rollout.retention_mode: keep, sleep, shrink (to 1 replica, shrink_to: 1) or stop (the old pool after a promotion)")
	f.BoolVar(&canary, "canary", false, "deploy with the canary strategy: 10 % of new requests for at least 30s (until the gates have their samples: about a minute at the default --traffic), then 50 % until cutover promote (sessions kept by X-Session-Id)")
	return cmd
}

// demoAddrs holds the simulated replicas' addresses by role: blue, green
// and spare.
type demoAddrs map[string][]string

// demoAddrsFile is where the demo keeps its replicas' addresses, in the
// state directory.
const demoAddrsFile = "demo-replicas.json"

// loadDemoAddrs reads the addresses of the last run; none when there was
// no last run or the file is unreadable (the demo then starts afresh).
func loadDemoAddrs(dir string) demoAddrs {
	b, err := os.ReadFile(filepath.Join(dir, demoAddrsFile))
	if err != nil {
		return nil
	}
	var a demoAddrs
	if json.Unmarshal(b, &a) != nil {
		return nil
	}
	return a
}

// persistedLive is the live pool the state file in dir holds, "" when
// there is none (a first run, a fleet's state in etcd) or it cannot be
// read (the start reports that itself).
func persistedLive(dir string) string {
	sum, err := store.CheckFile(filepath.Join(dir, store.DBFile))
	if err != nil || sum.Doc == nil {
		return ""
	}
	live, _ := stateLive(sum.Doc)
	return live
}

// stateLive reads the live pool of a state document; ok is false when
// the document is not JSON or names no configured pool (blue, green).
func stateLive(doc []byte) (live string, ok bool) {
	var st struct {
		Live string `json:"live"`
	}
	if json.Unmarshal(doc, &st) != nil || !slices.Contains(config.PoolNames, st.Live) {
		return "", false
	}
	return st.Live, true
}

// saveDemoAddrs writes the replicas' addresses for the next run.
func saveDemoAddrs(dir string, a demoAddrs) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, demoAddrsFile), b, 0o600); err != nil {
		return fmt.Errorf("save the simulated replicas' addresses: %w", err)
	}
	return nil
}

// startMockSteady serves a simulated replica on a free port below the
// kernel's ephemeral range (which outgoing connections take their ports
// from), else on any free port.
func startMockSteady(c mockllm.Config) (string, *http.Server, error) {
	lo := 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const from = 20000
	for range 32 {
		if lo <= from {
			break
		}
		port := from + mathrand.IntN(lo-from)
		if url, srv, err := startMock(c, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			return url, srv, nil
		}
	}
	return startMock(c, "127.0.0.1:0")
}

// startMock serves a simulated replica on addr (port 0: a free one).
func startMock(c mockllm.Config, addr string) (string, *http.Server, error) {
	m, err := mockllm.New(c)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("simulated replica: %w", err)
	}
	// Idle connections are dropped after 5 s, as vLLM's uvicorn does, so
	// the demo exercises the gateway's stale-connection handling.
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "simulated replica:", err)
		}
	}()
	return "http://" + ln.Addr().String(), srv, nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}

// selfCommand is how the user runs this binary again: "go run ./cmd/cutover"
// when started by go run, else the executable's name.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/cutover"
	}
	if p, err := execLookPath("cutover"); err == nil && p == exe {
		return "cutover"
	}
	return exe
}

func printDemo(w io.Writer, gw *gateway.Gateway, cfg *config.Config, token string, spare, simulated []string) {
	w = termWriter{w} // model ids and URLs from a restored state
	self := selfCommand()
	adminURL := "http://" + gw.AdminAddr()
	adminFlag := ""
	if adminURL != "http://127.0.0.1:8081" {
		adminFlag = " --admin " + adminURL
	}
	traffic := "http://" + gw.TrafficAddr()
	// The pools as the state has them: after a restart with --state-dir,
	// green may be live and a deployment may have replaced a pool.
	st := gw.Controller().Status()
	standby := "green"
	if st.Live == "green" {
		standby = "blue"
	}
	var pools strings.Builder
	for _, name := range config.PoolNames {
		p := st.Pools[name]
		role := p.Role // live, retained, ... as status says
		var urls []string
		for _, r := range p.Replicas {
			urls = append(urls, r.URL)
		}
		if len(urls) == 0 {
			urls = []string{"(no replicas)"}
		}
		fmt.Fprintf(&pools, "  %-16s %s  %s\n", fmt.Sprintf("%s (%s)", name, role), p.Model, strings.Join(urls, " "))
	}
	fmt.Fprintf(w, `
cutover demo is running. Ctrl-C stops it.

  traffic    %s   (OpenAI API; clients use model "llama")
  dashboard  %s/   (paste the token)
  admin      %s
  token      %s
  state      %s

%s
Try it from another terminal:

  export %s=%s

  curl -N %s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"llama","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'

  %s status%s
  %s promote%s      # %s becomes live; streams on %s finish on %s
  %s rollback%s     # %s is live again
  %s history%s

%s
%s
`, traffic, adminURL, adminURL, token, cfg.StateDir, pools.String(),
		config.TokenEnv, token, traffic,
		self, adminFlag, self, adminFlag, standby, st.Live, st.Live, self, adminFlag, st.Live, self, adminFlag,
		shipHint(st, cfg, self, adminFlag, spare),
		faultHint(st, simulated))
}

// shipHint is the banner's "ship a new version" paragraph: the deploy
// command for the spare replicas, or, when a restored state already put
// them in a pool, what to follow instead (a deploy naming them would be
// refused).
func shipHint(st api.Status, cfg *config.Config, self, adminFlag string, spare []string) string {
	for name, p := range st.Pools {
		for _, r := range p.Replicas {
			if slices.Contains(spare, r.URL) {
				return fmt.Sprintf(`The spare replicas of %s already serve pool %s (%s, as the state restored
it): follow it with
  %s status --watch%s`, demoNextModel, name, p.Role, self, adminFlag)
			}
		}
	}
	return fmt.Sprintf(`Ship a new version (%s) through a full rollout: the local agent starts its
replicas on 2 of its %d simulated GPUs, then warm-up, %s, %spromote, retention of the old pool (%s, %s), retirement —
watch it on the dashboard ("GPUs and agents"), or:
  %s deploy%s --model %s   # the agent starts the replicas (status: launch)
  %s status --watch%s   # phase, gates, GPUs by pool and state, the agent
%s  %s retire%s           # end the retention early: a retired pool's agent replicas stop, their GPUs free
  %s history%s          # each step with its GPU-seconds (overlap)
Or with replicas cutover does not manage (spares already running):
  %s deploy%s --model %s --replica %s
`, demoNextModel, demoAgentGPUs, validationNoteForDemo(cfg), canaryNoteForDemo(cfg), cfg.Rollout.Retention, retentionNote(cfg.Rollout.RetentionMode),
		self, adminFlag, demoNextModel, self, adminFlag, retentionHints(cfg.Rollout.RetentionMode, self, adminFlag), self, adminFlag, self, adminFlag,
		self, adminFlag, demoNextModel, strings.Join(spare, " --replica "))
}

// validationNoteForDemo is what the banner says of validation: the
// demo's traffic is shadowed to the new version and compared; with
// --traffic 0 there is none to compare, and a deployment goes from
// warm-up to ready.
func validationNoteForDemo(cfg *config.Config) string {
	if cfg.Validation.Shadow.Percent > 0 {
		return "validation against the demo's traffic"
	}
	return "no validation (--traffic 0: no traffic to compare)"
}

// canaryNoteForDemo is the banner's canary step list (demo --canary): the
// share of new requests each step sends to the new version and the header
// that keeps a session on one version; "" without the canary strategy.
func canaryNoteForDemo(cfg *config.Config) string {
	if cfg.Rollout.Strategy != config.StrategyCanary || len(cfg.Rollout.Canary.Steps) == 0 {
		return ""
	}
	var steps []string
	for _, s := range cfg.Rollout.Canary.Steps {
		if s.Pause > 0 {
			steps = append(steps, fmt.Sprintf("%d %% for at least %s", s.Weight, s.Pause))
		} else {
			steps = append(steps, fmt.Sprintf("%d %% until promote", s.Weight))
		}
	}
	note := "a canary (new requests to the new version: " + strings.Join(steps, ", then ")
	if h := cfg.Rollout.Affinity.Header; h != "" {
		note += "; requests with the same " + h + " stay on one version"
	}
	return note + "), "
}

// demoRetentionModes are the values of the demo's --retention-mode.
var demoRetentionModes = []string{"keep", "sleep", "shrink", "stop"}

// retentionNote says what the demo's retention mode does to the old pool.
func retentionNote(mode string) string {
	switch mode {
	case "sleep":
		return "asleep: vLLM's sleep mode"
	case "shrink":
		return "shrunk to 1 replica: the others stopped, their GPUs free"
	case "stop":
		return "none: stopped at once"
	}
	return "awake"
}

// retentionHints are the banner's promote and rollback lines for the
// retention mode: what each does to the old pool.
func retentionHints(mode, self, adminFlag string) string {
	promote, rollback := "the old pool stays up as it is (retained_awake)", "instant: the old pool never stopped"
	extra := ""
	switch mode {
	case "sleep":
		promote, rollback = "the old pool is put to sleep (retained_asleep)", "wakes it first; history says how long the wake took"
	case "shrink":
		promote, rollback = "the old pool shrinks to 1 replica (the others stopped, GPUs free)", "starts the missing replicas first, then switches"
		extra = fmt.Sprintf("  %s rollback%s --now   # or switch at once onto the 1 replica left; the others start in the background\n", self, adminFlag)
	case "stop":
		promote, rollback = "the old pool is retired at once (its GPUs free)", "refused: nothing is retained (deploy the old version again)"
	}
	return fmt.Sprintf("  %s promote%s          # %s\n  %s rollback%s         # %s\n%s", self, adminFlag, promote, self, adminFlag, rollback, extra)
}

// faultHint is the banner's "break a replica" paragraph. It names a
// simulated replica that is in a pool now — the standby's if it has one,
// else the live pool's — never a spare no pool holds (regression); ""
// when no pool holds a simulated replica.
func faultHint(st api.Status, simulated []string) string {
	standby := "blue"
	if st.Live == "blue" {
		standby = "green"
	}
	for _, name := range []string{standby, st.Live} {
		for _, r := range st.Pools[name].Replicas {
			if slices.Contains(simulated, r.URL) {
				return fmt.Sprintf(`Break a replica of %s (simulator-only fault endpoint; after a deploy, take a replica URL from
status instead: a pool's replicas change), then watch status:
  curl -d '{"fail_health":true}' %s/mock/faults
`, name, r.URL)
			}
		}
	}
	return ""
}

var execLookPath = exec.LookPath

// demoTraffic sends a steady trickle of chat completions, streamed and
// not, so that the dashboard has something to show and validation has
// live answers to compare with, until ctx ends.
func demoTraffic(ctx context.Context, base string, perSecond float64) {
	prompts := []string{"What is blue-green deployment?", "Name three GPUs.", "Summarise the plot of Hamlet.", "Write a haiku about rollbacks."}
	client := &http.Client{Timeout: time.Minute}
	t := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		body := fmt.Sprintf(`{"model":"llama","stream":%t,"temperature":0,"max_tokens":24,"messages":[{"role":"user","content":%q}]}`, i%2 == 0, prompts[i%len(prompts)])
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}()
	}
}
