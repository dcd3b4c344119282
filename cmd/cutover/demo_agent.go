package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cutover-dev/cutover/internal/agent"
	"github.com/cutover-dev/cutover/internal/config"
)

// demoAgentGPUs is how many GPUs the demo's local agent simulates.
const demoAgentGPUs = 4

// demoAgent is the demo's local `cutover agent`, run in this process:
// its replicas are this binary's simulator (mock-llm with vLLM's sleep
// mode), each on one of its simulated GPUs.
type demoAgent struct {
	a    *agent.Agent
	srv  *http.Server
	addr string
	log  *slog.Logger
}

// startDemoAgent starts the agent on addr (a free port when "" or taken),
// keeping its token, logs and replica records in stateDir, and points
// cfg's agents and launch at it: a deploy without --replica starts
// replicas replicas of one GPU each.
func startDemoAgent(cfg *config.Config, stateDir, addr string, replicas int, ttft, itl time.Duration, log *slog.Logger) (*demoAgent, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("demo agent: this program's path: %w", err)
	}
	dir := filepath.Join(stateDir, "agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("demo agent: %w", err)
	}
	tokFile := filepath.Join(dir, "token")
	if _, err := os.Stat(tokFile); err != nil {
		if err := os.WriteFile(tokFile, []byte(randomToken()+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("demo agent: token: %w", err)
		}
	}
	ports, err := demoPortRange()
	if err != nil {
		return nil, err
	}
	acfg := &agent.Config{Listen: "127.0.0.1:0", TokenFile: tokFile, GPUs: strconv.Itoa(demoAgentGPUs), Ports: ports,
		// The simulator as vLLM: sleep mode on, 2 s to "load the
		// weights" (503 until then), half a second to wake.
		Command: []string{exe, "mock-llm", "--model", "{model}", "--listen", "127.0.0.1:{port}", "--enable-sleep-mode",
			"--startup-period", "2s", "--wake-delay", "500ms", "--sleep-delay", "200ms",
			"--ttft", ttft.String(), "--itl", itl.String(), "--tokens", "48"},
		Env:    map[string]string{"VLLM_SERVER_DEV_MODE": "1"},
		LogDir: filepath.Join(dir, "logs"), StopGrace: 5 * time.Second}
	if err := acfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo agent: %w", err)
	}
	a, err := agent.New(acfg, log)
	if err != nil {
		return nil, fmt.Errorf("demo agent: %w", err)
	}
	var ln net.Listener
	if addr != "" {
		ln, _ = net.Listen("tcp", addr)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("demo agent: %w", err)
		}
	}
	d := &demoAgent{a: a, srv: &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String(), log: log}
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo agent", "error", err)
		}
	}()
	cfg.Agents = []config.Agent{{Name: "local", URL: "http://" + d.addr, TokenFile: tokFile}}
	cfg.Launch = config.Launch{Replicas: replicas, GPUsPerReplica: 1, ReadyTimeout: config.Duration(2 * time.Minute)}
	return d, nil
}

// stop ends the agent; unless keep, it first stops every replica it
// started (a demo with its own state directory keeps them for its next
// run, whose agent re-adopts them).
func (d *demoAgent) stop(keep bool) {
	if !keep {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for _, r := range d.a.Replicas() {
			if r.State != agent.StateExited {
				if _, err := d.a.Stop(ctx, r.ID); err != nil {
					d.log.Warn("demo agent: stopping a replica", "id", r.ID, "error", err)
				}
			}
		}
	}
	_ = d.srv.Close()
}

// demoPortRange is 100 ports from one free now (the agent skips those
// taken later).
func demoPortRange() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo agent: ports: %w", err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	if p > 65000 {
		p = 40000
	}
	return fmt.Sprintf("%d-%d", p, p+99), nil
}
