// Command bench compares cutover with nginx and HAProxy on the same machine,
// the same simulated backends and the same load (issue 7): saturation with
// small completions, concurrent streams, many idle streams, switch
// propagation under load, and the cost of shadow traffic. Every process
// runs on loopback; the targets are interleaved round by round so that
// drift on a shared machine hits them alike. A sixth scenario (issue 17)
// compares balancers over four simulated replicas of one pool. It writes a Markdown table and
// the raw JSON to bench/out/.
//
//	make bench                  # installs nginx, haproxy, wrk when missing, then: go run ./bench
//	go run ./bench -smoke       # a few seconds, every scenario and target, tiny sizes
//	go run ./bench -help        # every knob
//
// See docs/benchmarks.md for the methods and how to read the ratios.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the harness's knobs. Durations and counts must be positive.
type options struct {
	out        string // output directory (bench/out under the module root when empty)
	cutoverBin string // prebuilt cutover binary; empty: build ./cmd/cutover
	rounds     int    // interleaved rounds of scenarios 1, 4, 5 and 6
	// streamsRounds: scenario 2's rounds. A round of 200 streams opened
	// within one ITL is decided by scheduling noise on two shared cores
	// (direct's own TTFB p50 went from 0.4 to 6 ms between rounds), and
	// takes seconds: it gets more rounds than the others, so that its
	// medians mean something.
	streamsRounds int
	workers       int           // nginx workers, HAProxy threads, cutover GOMAXPROCS; 0: number of CPUs
	scenarios     string        // comma-separated subset of saturation,streams,idle,switch,shadow,balance
	smoke         bool          // tiny sizes, for the test suite
	timeout       time.Duration // bound on the whole run
	command       string        // how the run was started, for the report

	// Scenario 1.
	satConns      int
	wrkThreads    int
	satSeconds    int // wrk takes whole seconds
	warmupSeconds int // unmeasured run per target before round 1; 0: none

	// Scenario 2.
	streams      int
	streamChunks int
	streamITL    time.Duration

	// Scenario 3.
	idleStreams int
	idleITL     time.Duration
	idlePlateau time.Duration
	idleRate    float64       // streams opened per second during the ramp
	idleRampMax time.Duration // the ramp stops opening streams after this
	idleRounds  int

	// Scenario 4.
	switchClients int
	switches      int // per round and target
	switchSettle  time.Duration
	switchObserve time.Duration

	// Scenario 5.
	shadowRate     float64
	shadowDuration time.Duration

	// Scenario 6.
	balanceDuration time.Duration // arrivals per run (the run then waits for the answers)
	balanceRate     float64       // requests per second; 0: derived from the simulator for balanceBusy
	balanceBusy     float64       // the pool's busy fraction the derived rate aims at
	balanceSeed     uint64
	// balanceBatchedTokens, when > 0, runs the simulated replicas with
	// --max-num-batched-tokens (one compute per replica, vLLM's steps).
	balanceBatchedTokens int
}

// allScenarios lists the scenarios in the order they run.
var allScenarios = []string{"saturation", "streams", "idle", "switch", "shadow", "balance"}

// defaultOptions is the full run: about 12 minutes on 2 cores.
func defaultOptions() options {
	return options{
		rounds: 3, streamsRounds: 9, scenarios: strings.Join(allScenarios, ","), timeout: 15 * time.Minute,
		satConns: 64, wrkThreads: 1, satSeconds: 8, warmupSeconds: 2,
		streams: 200, streamChunks: 50, streamITL: 20 * time.Millisecond,
		idleStreams: 10000, idleITL: time.Second, idlePlateau: 10 * time.Second, idleRate: 2000,
		idleRampMax: 20 * time.Second, idleRounds: 2,
		switchClients: 32, switches: 3, switchSettle: 300 * time.Millisecond, switchObserve: 700 * time.Millisecond,
		shadowRate: 1000, shadowDuration: 5 * time.Second,
		balanceDuration: 20 * time.Second, balanceBusy: 0.8, balanceSeed: 1,
	}
}

// smokeOptions shrinks every scenario to a fraction of a second or so: the
// harness runs end to end, the figures mean nothing.
func smokeOptions() options {
	o := defaultOptions()
	o.smoke = true
	o.rounds, o.streamsRounds, o.timeout = 1, 1, 3*time.Minute
	o.satSeconds, o.warmupSeconds, o.satConns = 1, 0, 8
	o.streams, o.streamChunks, o.streamITL = 10, 5, 10*time.Millisecond
	o.idleStreams, o.idleITL, o.idlePlateau, o.idleRate, o.idleRampMax = 50, 100*time.Millisecond, 300*time.Millisecond, 5000, 2*time.Second
	o.idleRounds = 1
	o.switchClients, o.switches, o.switchSettle, o.switchObserve = 4, 1, 100*time.Millisecond, 200*time.Millisecond
	o.shadowRate, o.shadowDuration = 200, 300*time.Millisecond
	o.balanceDuration = time.Second
	return o
}

// parseFlags reads the command line: -smoke picks the smoke defaults, and
// any other flag given wins over them.
func parseFlags(args []string) (options, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	bind := func(o *options) {
		fs.StringVar(&o.out, "out", o.out, "output directory (default: bench/out in the module)")
		fs.StringVar(&o.cutoverBin, "cutover-bin", o.cutoverBin, "prebuilt cutover binary (default: build ./cmd/cutover)")
		fs.IntVar(&o.rounds, "rounds", o.rounds, "interleaved rounds of the saturation, switch, shadow and balance scenarios")
		fs.IntVar(&o.streamsRounds, "streams-rounds", o.streamsRounds, "interleaved rounds of the streams scenario")
		fs.IntVar(&o.workers, "workers", o.workers, "nginx worker_processes, HAProxy nbthread and cutover GOMAXPROCS (0: number of CPUs)")
		fs.StringVar(&o.scenarios, "scenarios", o.scenarios, "comma-separated scenarios to run")
		fs.DurationVar(&o.timeout, "timeout", o.timeout, "bound on the whole run")
		fs.IntVar(&o.satConns, "sat-conns", o.satConns, "saturation: wrk connections")
		fs.IntVar(&o.wrkThreads, "wrk-threads", o.wrkThreads, "saturation: wrk threads")
		fs.IntVar(&o.satSeconds, "sat-seconds", o.satSeconds, "saturation: seconds per measured run")
		fs.IntVar(&o.warmupSeconds, "warmup-seconds", o.warmupSeconds, "saturation: seconds of unmeasured warm-up per target (0: none)")
		fs.IntVar(&o.streams, "streams", o.streams, "streams: concurrent streams")
		fs.IntVar(&o.streamChunks, "stream-chunks", o.streamChunks, "streams: tokens per stream")
		fs.DurationVar(&o.streamITL, "stream-itl", o.streamITL, "streams: inter-token latency of the backend")
		fs.IntVar(&o.idleStreams, "idle-streams", o.idleStreams, "idle: concurrent streams")
		fs.DurationVar(&o.idleITL, "idle-itl", o.idleITL, "idle: inter-token latency of the backend")
		fs.DurationVar(&o.idlePlateau, "idle-plateau", o.idlePlateau, "idle: measured plateau")
		fs.Float64Var(&o.idleRate, "idle-rate", o.idleRate, "idle: streams opened per second")
		fs.DurationVar(&o.idleRampMax, "idle-ramp-max", o.idleRampMax, "idle: bound on the ramp")
		fs.IntVar(&o.idleRounds, "idle-rounds", o.idleRounds, "idle: rounds")
		fs.IntVar(&o.switchClients, "switch-clients", o.switchClients, "switch: concurrent clients")
		fs.IntVar(&o.switches, "switches", o.switches, "switch: switches per round and proxy")
		fs.DurationVar(&o.switchSettle, "switch-settle", o.switchSettle, "switch: load before the first switch")
		fs.DurationVar(&o.switchObserve, "switch-observe", o.switchObserve, "switch: observation after each switch")
		fs.Float64Var(&o.shadowRate, "shadow-rate", o.shadowRate, "shadow: requests per second")
		fs.DurationVar(&o.shadowDuration, "shadow-duration", o.shadowDuration, "shadow: duration of each run")
		fs.DurationVar(&o.balanceDuration, "balance-duration", o.balanceDuration, "balance: arrivals per run and target")
		fs.Float64Var(&o.balanceRate, "balance-rate", o.balanceRate, "balance: requests per second (0: derived from the simulator's timings for -balance-busy)")
		fs.Float64Var(&o.balanceBusy, "balance-busy", o.balanceBusy, "balance: the pool's busy fraction the derived rate aims at")
		fs.Uint64Var(&o.balanceSeed, "balance-seed", o.balanceSeed, "balance: seed of the workload and the simulated replicas")
		fs.IntVar(&o.balanceBatchedTokens, "balance-batched-tokens", o.balanceBatchedTokens, "balance: the replicas' --max-num-batched-tokens (0: off, each prefill runs on its own)")
	}
	bind(&o)
	smoke := fs.Bool("smoke", false, "tiny sizes: a few seconds, for the test suite")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *smoke {
		// Parse again over the smoke defaults so that explicit flags win.
		s := smokeOptions()
		fs = flag.NewFlagSet("bench", flag.ContinueOnError)
		bind(&s)
		fs.Bool("smoke", true, "")
		if err := fs.Parse(args); err != nil {
			return s, err
		}
		o = s
	}
	o.command = reproduceCommand(args)
	err := o.validate()
	return o, err
}

// reproduceCommand is the command line of this run, as make spells it
// when make started it (make exports MAKELEVEL).
func reproduceCommand(args []string) string {
	if os.Getenv("MAKELEVEL") == "" {
		return strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
	}
	target, rest := "make bench", args
	if len(args) > 0 && (args[0] == "-smoke" || args[0] == "--smoke") {
		target, rest = "make bench-smoke", args[1:]
	}
	if len(rest) == 0 {
		return target
	}
	return target + " BENCHFLAGS='" + strings.Join(rest, " ") + "'"
}

// validate names the first bad knob.
func (o *options) validate() error {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"rounds", o.rounds >= 1}, {"streams-rounds", o.streamsRounds >= 1}, {"workers", o.workers >= 0}, {"timeout", o.timeout > 0},
		{"sat-conns", o.satConns >= 1}, {"wrk-threads", o.wrkThreads >= 1 && o.wrkThreads <= o.satConns},
		{"sat-seconds", o.satSeconds >= 1}, {"warmup-seconds", o.warmupSeconds >= 0},
		{"streams", o.streams >= 1}, {"stream-chunks", o.streamChunks >= 1}, {"stream-itl", o.streamITL > 0},
		{"idle-streams", o.idleStreams >= 1}, {"idle-itl", o.idleITL > 0}, {"idle-plateau", o.idlePlateau > 0},
		{"idle-rate", o.idleRate > 0}, {"idle-ramp-max", o.idleRampMax > 0}, {"idle-rounds", o.idleRounds >= 1},
		{"switch-clients", o.switchClients >= 1}, {"switches", o.switches >= 1},
		{"switch-settle", o.switchSettle > 0}, {"switch-observe", o.switchObserve > 0},
		{"shadow-rate", o.shadowRate > 0}, {"shadow-duration", o.shadowDuration > 0},
		{"balance-duration", o.balanceDuration > 0}, {"balance-rate", o.balanceRate >= 0},
		{"balance-busy", o.balanceBusy > 0 && o.balanceBusy <= 1}, {"balance-batched-tokens", o.balanceBatchedTokens >= 0},
	} {
		if !c.ok {
			return fmt.Errorf("bad -%s", c.name)
		}
	}
	var names []string
	for s := range strings.SplitSeq(o.scenarios, ",") {
		s = strings.TrimSpace(s)
		if !containsString(allScenarios, s) {
			return fmt.Errorf("bad -scenarios: unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ","))
		}
		names = append(names, s)
	}
	o.scenarios = strings.Join(names, ",") // the form run matches against
	return nil
}

// containsString reports whether xs holds x.
func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	rep, paths, err := run(ctx, o, logf)
	if rep != nil {
		logf("wrote %s", strings.Join(paths, ", "))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
