package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestStatusWatch runs cutover status --watch against a gateway, as a
// process: it prints one view per interval, without terminal escapes when
// stdout is not a terminal, and exits 0 on Ctrl-C.
func TestStatusWatch(t *testing.T) {
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1)}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	srv := start(t, env, "serve", "--config", c.write(t))
	waitAdmin(t, srv, &api.Client{BaseURL: "http://" + c.admin, Token: "secret"})

	w := start(t, env, "status", "--watch", "--interval", "100ms", "--admin", c.admin)
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(w.stderr.String(), "LIVE BLUE") < 2 {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("watch exited (%v) before its second view:\n%s", err, w.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 2 views after 20s:\n%s", w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := w.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGINT:\n%s", code, w.stderr.String())
	}
	out := w.stderr.String()
	if strings.Contains(out, "\x1b[") {
		t.Errorf("terminal escapes in output to a pipe:\n%q", out)
	}
	for _, want := range []string{"model-v1", "healthy", "\n\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusWatchStops: a watch that cannot work stops at once with the
// usual exit codes.
func TestStatusWatchStops(t *testing.T) {
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1)}
	srv := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	waitAdmin(t, srv, &api.Client{BaseURL: "http://" + c.admin, Token: "secret"})
	tests := []struct {
		name  string
		token string
		args  []string
		code  int
		want  string
	}{
		{"wrong token", "wrong", nil, exitFailure, "token"},
		{"zero interval", "secret", []string{"--interval", "0s"}, exitUsage, "--interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"status", "--watch", "--admin", c.admin}, tt.args...)
			code, _, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=" + tt.token}, args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

func TestRenderWatch(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	pools := func(blueHealthy bool, blueRole string) map[string]api.Pool {
		return map[string]api.Pool{
			"blue": {Name: "blue", Model: "m-v2", Role: blueRole, HealthyReplicas: 1, Replicas: []api.Replica{
				{URL: "http://10.0.1.1:8000", Healthy: true},
				{URL: "http://10.0.1.2:8000", Healthy: blueHealthy, LastError: "GET /health: status 503"},
			}},
			"green": {Name: "green", Model: "m-v1", Live: true, Role: "live", HealthyReplicas: 1, InFlight: 3, Replicas: []api.Replica{
				{URL: "http://10.0.0.1:8000", Healthy: true, InFlight: 3},
			}},
		}
	}
	warming := &api.Deployment{ID: "d-2", Pool: "blue", Model: "m-v2", From: "green", Phase: "warming",
		Replicas:   []string{"http://10.0.1.1:8000", "http://10.0.1.2:8000"},
		PhaseSince: now.Add(-5 * time.Minute), Deadline: now.Add(15 * time.Minute), DeadlineKind: "progress",
		Waiting: "1/2 ready"}
	validating := &api.Deployment{ID: "d-2", Pool: "blue", Model: "m-v2", From: "green", Phase: "validating",
		Replicas: warming.Replicas, PhaseSince: now.Add(-time.Minute), Deadline: now.Add(9 * time.Minute), DeadlineKind: "validation",
		Gates: []api.Gate{
			{Name: "error_rate", Value: 0.004, Threshold: 0.02, Op: "<=", Samples: 40, MinSamples: 20, Verdict: "pass"},
			{Name: "ttft_p95_ratio", Value: 2.1, Threshold: 1.5, Op: "<=", Samples: 0, MinSamples: 20, Verdict: "inconclusive", ConsecutiveFailures: 2},
		}}
	tests := []struct {
		name   string
		status api.Status
		want   []string
		absent []string
	}{
		{"no deployment", api.Status{Live: "green", Revision: 3, Pools: pools(true, "standby")},
			[]string{"LIVE GREEN  m-v1  revision 3", "green  LIVE", "blue   standby", "3 in flight"},
			[]string{"deployment", "UNHEALTHY"}},
		{"warming", api.Status{Live: "green", Revision: 4, Pools: pools(false, "candidate"), Deployment: warming},
			[]string{"new (warming)", "UNHEALTHY", "GET /health: status 503", "WARMING for 5m0s",
				"replicas  [############------------]  50%  1/2 healthy", "time      [######------------------]  25%", "waiting   1/2 ready"},
			[]string{"gates"}},
		{"validating", api.Status{Live: "green", Revision: 5, Pools: pools(true, "candidate"), Deployment: validating},
			[]string{"new (validating)", "samples  [############------------]  50%  1/2 gates pass", "time     [##----------------------]  10%",
				"error_rate      PASS", "0.004 <= 0.02", "n=40/20", "INCONCLUSIVE", "failing 2x"},
			nil},
		{"protection", api.Status{Live: "green", Revision: 7, Pools: pools(true, "retained"),
			Protection: api.Protection{RollbackTo: "blue", RetainedPool: "blue", Summary: "blue retained for rollback until 12:10:00 UTC; post-promotion checks until 12:05:00 UTC"}},
			[]string{"protection: blue retained for rollback until 12:10:00 UTC; post-promotion checks until 12:05:00 UTC\n"},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			renderWatch(&b, &tt.status, now)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("view lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.absent {
				if strings.Contains(b.String(), w) {
					t.Errorf("view has %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestProgressBar(t *testing.T) {
	tests := []struct {
		frac float64
		want string
	}{
		{0, "[----] 0%"},
		{0.5, "[##--] 50%"},
		{1, "[####] 100%"},
		{-1, "[----] 0%"},
		{3, "[####] 100%"},
	}
	for _, tt := range tests {
		if got := strings.Join(strings.Fields(progressBar(tt.frac, 4)), " "); got != tt.want {
			t.Errorf("progressBar(%g) = %q, want %q", tt.frac, got, tt.want)
		}
	}
}

// TestUntilFrom: a moment under half a second away reads as one, never as
// "0s ago" (a canary step's pause "ended 0s ago").
func TestUntilFrom(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-300 * time.Millisecond, "just now"},
		{0, "just now"},
		{300 * time.Millisecond, "in under a second"},
		{-3 * time.Second, "3s ago"},
		{2 * time.Minute, "in 2m0s"},
		{1600 * time.Millisecond, "in 2s"},
	} {
		if got := untilFrom(now, now.Add(c.d)); got != c.want {
			t.Errorf("untilFrom(now, now%+v) = %q, want %q", c.d, got, c.want)
		}
	}
}
