package main

// One run of the harness: find the tools, build cutover, run the scenarios
// in order, write the report.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// run executes the scenarios o selects and writes the report; it returns the
// report (nil when nothing ran) and the files written. A failed scenario is
// recorded in the report and the run goes on with the next one; the error
// then joins every failure.
func run(ctx context.Context, o options, logf func(string, ...any)) (*report, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	began := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return nil, nil, err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "out")
	}
	if abs, err := filepath.Abs(o.out); err == nil {
		o.out = abs // the gateway's state_dir, under it, must be absolute
	}
	runDir := filepath.Join(o.out, "run-"+began.Format("20060102-150405"))
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", runDir, err)
	}
	e := &env{dir: runDir, workers: o.workers, root: os.Geteuid() == 0, logf: logf}
	if e.workers == 0 {
		e.workers = runtime.NumCPU()
	}
	for _, tool := range []struct {
		name string
		dst  *string
	}{{"nginx", &e.nginx}, {"haproxy", &e.haproxy}, {"wrk", &e.wrk}} {
		if *tool.dst, err = lookTool(tool.name); err != nil {
			return nil, nil, err
		}
	}
	// Every stream holds a client socket and, through a proxy, its upstream
	// socket; the backend holds one per stream too.
	if e.nofile, err = raiseNoFile(uint64(4*o.idleStreams + 65536)); err != nil {
		return nil, nil, err
	}
	e.cutover = o.cutoverBin
	if e.cutover == "" {
		e.cutover = filepath.Join(o.out, "bin", "cutover")
		logf("building %s", e.cutover)
		if err := buildCutover(ctx, root, e.cutover); err != nil {
			return nil, nil, err
		}
	}

	rep := &report{
		Date: began.UTC().Format(time.RFC3339), Command: o.command, Smoke: o.smoke,
		Machine: readMachine(), Versions: readVersions(ctx, e, root), Workers: e.workers, Rounds: o.rounds, StreamsRounds: o.streamsRounds,
	}
	var errs []error
	fail := func(err error) {
		logf("error: %v", err)
		errs = append(errs, err)
		rep.Errors = append(rep.Errors, err.Error())
	}
	for _, name := range allScenarios {
		if !strings.Contains(","+o.scenarios+",", ","+name+",") {
			continue
		}
		if ctx.Err() != nil {
			fail(fmt.Errorf("%s: not run: %w", name, ctx.Err()))
			continue
		}
		logf("scenario %s", name)
		scenarioStart := time.Now()
		switch name {
		case "saturation":
			r, err := runSaturation(ctx, e, &o)
			rep.Saturation = r
			if err != nil {
				fail(fmt.Errorf("saturation: %w", err))
			}
		case "streams":
			r, err := runStreams(ctx, e, &o)
			rep.Streams = r
			if err != nil {
				fail(fmt.Errorf("streams: %w", err))
			}
		case "idle":
			r, err := runIdle(ctx, e, &o)
			rep.Idle = r
			if err != nil {
				fail(fmt.Errorf("idle: %w", err))
			}
		case "switch":
			r, err := runSwitch(ctx, e, &o)
			rep.Switch = r
			if err != nil {
				fail(fmt.Errorf("switch: %w", err))
			}
		case "shadow":
			r, err := runShadow(ctx, e, &o)
			rep.Shadow = r
			if err != nil {
				fail(fmt.Errorf("shadow: %w", err))
			}
		case "balance":
			r, err := runBalance(ctx, e, &o)
			rep.Balance = r
			if err != nil {
				fail(fmt.Errorf("balance: %w", err))
			}
		}
		logf("scenario %s took %.1f s", name, time.Since(scenarioStart).Seconds())
	}
	rep.Seconds = time.Since(began).Seconds()
	paths, err := rep.write(o.out, runDir)
	if err != nil {
		errs = append(errs, err)
	}
	return rep, paths, errors.Join(errs...)
}

// moduleRoot finds the directory of cutover's go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/cutover-dev/cutover\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no cutover go.mod in %s or above: run the harness inside the repository", dir)
		}
	}
}

// goTool returns the go command.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// buildCutover builds ./cmd/cutover of the module at root into dst.
func buildCutover(ctx context.Context, root, dst string) error {
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", dst, "./cmd/cutover")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build cutover (%w): %s\n"+
			"the working tree does not build: benchmark the last commit with\n"+
			"  git worktree add /tmp/bench-wt HEAD && (cd /tmp/bench-wt && go build -o /tmp/cutover-head ./cmd/cutover)\n"+
			"  go run ./bench -cutover-bin /tmp/cutover-head", err, strings.TrimSpace(string(out)))
	}
	return nil
}
