package main

import (
	"os"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
)

// TestFaultHint: the demo's "break a replica" hint names a simulated
// replica that a pool holds at that moment (regression: with an empty
// standby it named a spare that no pool held, so breaking it changed
// nothing in status).
func TestFaultHint(t *testing.T) {
	pool := func(urls ...string) api.Pool {
		p := api.Pool{}
		for _, u := range urls {
			p.Replicas = append(p.Replicas, api.Replica{URL: u})
		}
		return p
	}
	sim := []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4"}
	tests := []struct {
		name string
		st   api.Status
		want string // the replica named, "" for no hint
	}{
		{"standby's first", api.Status{Live: "blue", Pools: map[string]api.Pool{"blue": pool(sim[0]), "green": pool(sim[1], sim[2])}}, sim[1]},
		{"green live", api.Status{Live: "green", Pools: map[string]api.Pool{"blue": pool(sim[0]), "green": pool(sim[1])}}, sim[0]},
		{"empty standby: the live pool's", api.Status{Live: "green", Pools: map[string]api.Pool{"blue": pool(), "green": pool(sim[3])}}, sim[3]},
		{"standby not simulated", api.Status{Live: "blue", Pools: map[string]api.Pool{"blue": pool(sim[0]), "green": pool("http://10.0.0.9:8000")}}, sim[0]},
		{"nothing simulated", api.Status{Live: "blue", Pools: map[string]api.Pool{"blue": pool("http://10.0.0.8:8000"), "green": pool()}}, ""},
	}
	for _, tt := range tests {
		got := faultHint(tt.st, sim)
		switch {
		case tt.want == "" && got != "":
			t.Errorf("%s: hint %q, want none", tt.name, got)
		case tt.want != "" && !strings.Contains(got, tt.want+"/mock/faults"):
			t.Errorf("%s: hint %q, want it to name %s", tt.name, got, tt.want)
		}
	}
}

// TestShipHint: the banner offers the deploy command only while the spare
// replicas are in no pool (a regression: after a restart that restored a
// deployment of them, it printed a deploy the gateway refuses).
func TestShipHint(t *testing.T) {
	cfg := &config.Config{}
	spare := []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002"}
	free := api.Status{Live: "blue", Pools: map[string]api.Pool{
		"blue":  {Name: "blue", Role: "live", Replicas: []api.Replica{{URL: "http://127.0.0.1:8001"}}},
		"green": {Name: "green", Role: "standby", Replicas: []api.Replica{{URL: "http://127.0.0.1:8002"}}},
	}}
	if h := shipHint(free, cfg, "cutover", "", spare); !strings.Contains(h, "deploy --model "+demoNextModel+" --replica http://127.0.0.1:9001 --replica http://127.0.0.1:9002") {
		t.Fatalf("spare replicas in no pool, no deploy command:\n%s", h)
	}
	used := api.Status{Live: "green", Pools: map[string]api.Pool{
		"blue":  {Name: "blue", Role: "retained", Replicas: []api.Replica{{URL: "http://127.0.0.1:8001"}}},
		"green": {Name: "green", Role: "live", Replicas: []api.Replica{{URL: spare[0]}, {URL: spare[1]}}},
	}}
	h := shipHint(used, cfg, "cutover", "", spare)
	if strings.Contains(h, "deploy") || !strings.Contains(h, "already serve pool green (live") {
		t.Fatalf("spare replicas live on green:\n%s", h)
	}
}

// TestShipHintCanary: with --canary the banner says the rollout goes
// through canary steps and which header keeps a session on one version
// (it once read exactly as without --canary).
func TestShipHintCanary(t *testing.T) {
	cfg := &config.Config{}
	if h := shipHint(api.Status{}, cfg, "cutover", "", nil); strings.Contains(h, "canary") {
		t.Fatalf("blue-green banner mentions a canary:\n%s", h)
	}
	demoCanary(cfg)
	h := shipHint(api.Status{}, cfg, "cutover", "", nil)
	for _, want := range []string{"a canary (new requests to the new version: 10 % for at least 30s, then 50 % until promote", "same X-Session-Id stay on one version"} {
		if !strings.Contains(h, want) {
			t.Errorf("canary banner lacks %q:\n%s", want, h)
		}
	}
}

// TestDemoFleetCommandsUseSelf: the fleet part of the demo's banner runs
// this binary the way the rest of the banner does (a regression: it said
// "cutover promote", which a user who started the demo with `go run
// ./cmd/cutover demo --gateways 3`, as the README does, has not got).
func TestDemoFleetCommandsUseSelf(t *testing.T) {
	var b strings.Builder
	printDemoFleet(&b, "go run ./cmd/cutover", "http://127.0.0.1:2379", "/cutover/demo/",
		[]string{"127.0.0.1:8080", "127.0.0.1:8090", "127.0.0.1:8092"}, []string{"127.0.0.1:8081", "127.0.0.1:8091", "127.0.0.1:8093"})
	out := b.String()
	for _, want := range []string{
		"go run ./cmd/cutover promote --admin http://127.0.0.1:8093\n",
		"go run ./cmd/cutover status --admin http://127.0.0.1:8081",
		"gw-3  traffic http://127.0.0.1:8092   admin http://127.0.0.1:8093",
		"curl -si http://127.0.0.1:8090/v1/chat/completions",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet banner lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "cutover ") {
			t.Errorf("fleet banner line runs a bare cutover: %q", line)
		}
	}
}

// TestDemoRetentionModes: the demo's banner says what a promotion and a
// rollback do to the old pool in each --retention-mode; shrink runs (with
// shrink_to 1, the rollback --now line in the banner), and a mode the
// demo does not know is a usage error (exit 2) naming the flag.
func TestDemoRetentionModes(t *testing.T) {
	for _, tc := range []struct{ mode, note, promote, rollback string }{
		{"keep", "awake", "stays up as it is", "instant"},
		{"sleep", "asleep", "is put to sleep", "wakes it first"},
		{"shrink", "shrunk to 1 replica", "shrinks to 1 replica", "rollback --now   # or switch at once onto the 1 replica left"},
		{"stop", "stopped at once", "is retired at once", "refused"},
	} {
		cfg := &config.Config{}
		cfg.Rollout.RetentionMode = tc.mode
		h := shipHint(api.Status{}, cfg, "cutover", "", nil)
		for _, want := range []string{tc.note, "promote          # the old pool " + tc.promote, tc.rollback} {
			if !strings.Contains(h, want) {
				t.Errorf("--retention-mode %s: banner lacks %q:\n%s", tc.mode, want, h)
			}
		}
	}
	if code, _, errOut := runCLI(t, nil, "demo", "--retention-mode", "nap"); code != 2 || !strings.Contains(errOut, "--retention-mode: want keep, sleep, shrink, stop") {
		t.Fatalf("demo --retention-mode nap: exit %d, stderr %s; want 2 naming the flag", code, errOut)
	}
	d := startDemo(t, withoutEnv(os.Environ(), "CUTOVER_ADMIN_TOKEN"), "--listen", freeAddr(t), "--admin-listen", freeAddr(t), "--traffic", "0", "--retention-mode", "shrink")
	if !strings.Contains(d.printed, " --now   # or switch at once onto the 1 replica left") {
		t.Errorf("demo --retention-mode shrink: banner lacks the rollback --now line:\n%s", d.printed)
	}
	d.stop(t)
}
