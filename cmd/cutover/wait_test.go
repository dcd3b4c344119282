package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
)

func TestWaitVerdict(t *testing.T) {
	tests := []struct {
		phase, target string
		done, failed  bool
	}{
		{"warming", "ready", false, false},
		{"validating", "ready", false, false},
		{"ready", "ready", true, false},
		{"promoted", "ready", true, false}, // auto-promotion passed ready between polls
		{"completed", "ready", true, false},
		{"ready", "promoted", false, false},
		{"retiring", "promoted", true, false},
		{"retiring", "completed", false, false},
		{"completed", "completed", true, false},
		{"failed", "ready", false, true},
		{"aborted", "promoted", false, true},
		{"rolled_back", "ready", false, true}, // it was ready once, but is not live now
		{"pending", "ready", false, false},
	}
	for _, tt := range tests {
		done, failed := waitVerdict(tt.phase, tt.target)
		if done != tt.done || failed != tt.failed {
			t.Errorf("waitVerdict(%s, %s) = %t, %t; want %t, %t", tt.phase, tt.target, done, failed, tt.done, tt.failed)
		}
	}
}

func TestFormatVersion(t *testing.T) {
	stamp := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name   string
		bi     *debug.BuildInfo
		commit string
		want   string
	}{
		{"go install", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.4.0"},
			Settings: stamp("vcs.revision", "0123456789abcdef0123", "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "false")},
			"", "cutover v1.4.0 (commit 0123456789ab, 2026-12-01T10:00:00Z) go1.26.0"},
		{"modified checkout", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: stamp("vcs.revision", "abc", "vcs.modified", "true")}, "", "cutover (devel) (commit abc, modified) go1.26.0"},
		{"no vcs stamp, commit from ldflags", &debug.BuildInfo{GoVersion: "go1.26.0"}, "fedcba9876543210",
			"cutover (devel) (commit fedcba987654) go1.26.0"},
		{"nothing known", &debug.BuildInfo{GoVersion: "go1.26.0"}, "", "cutover (devel) (commit unknown) go1.26.0"},
		{"no build info", nil, "", "cutover (unknown version: built without module information)"},
	}
	for _, tt := range tests {
		if got := formatVersion(tt.bi, tt.commit); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestVersion: cutover version and cutover --version print the same line.
func TestVersion(t *testing.T) {
	code1, out1, _ := runCLI(t, nil, "version")
	code2, out2, _ := runCLI(t, nil, "--version")
	if code1 != 0 || code2 != 0 || out1 != out2 || !strings.HasPrefix(out1, "cutover ") || !strings.Contains(out1, "commit") {
		t.Fatalf("version: exit %d %q; --version: exit %d %q", code1, out1, code2, out2)
	}
}

// fakeAdmin is an admin API whose deployment goes through a scripted list
// of phases, one per read, staying at the last.
type fakeAdmin struct {
	mu     sync.Mutex
	script []api.Deployment
	reads  int
}

func (f *fakeAdmin) next() api.Deployment {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.script[min(f.reads, len(f.script)-1)]
	f.reads++
	return d
}

func (f *fakeAdmin) serve(t *testing.T) string {
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		var st api.Status
		st.Live = "blue"
		if len(f.script) > 0 {
			d := f.next()
			st.Deployment = &d
		}
		write(w, 200, st)
	})
	mux.HandleFunc("GET /api/v1/deployments/{id}", func(w http.ResponseWriter, r *http.Request) {
		if len(f.script) == 0 || r.PathValue("id") != f.script[0].ID {
			write(w, 404, api.ErrorResponse{Error: api.ErrorBody{Message: "no deployment " + r.PathValue("id"), Code: "not_found"}})
			return
		}
		write(w, 200, f.next())
	})
	mux.HandleFunc("POST /api/v1/deployments", func(w http.ResponseWriter, r *http.Request) {
		write(w, 201, api.DeployResult{Deployment: f.next()})
	})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			write(w, 401, api.ErrorResponse{Error: api.ErrorBody{Message: "missing or wrong admin token", Code: "unauthorized"}})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func phases(id string, ps ...string) []api.Deployment {
	var out []api.Deployment
	for _, p := range ps {
		d := api.Deployment{ID: id, Phase: p, Model: "model-v3", Pool: "green", PhaseSince: time.Now()}
		switch p {
		case "failed":
			d.Reason = "gate error_rate failed: 0.229 > 0.02"
		case "validating":
			d.Waiting = "gates inconclusive: 12/50 samples"
		}
		out = append(out, d)
	}
	return out
}

// TestWaitExitCodes: cutover wait and deploy --wait exit 0 on the wanted
// phase, 1 with the reason when the deployment fails or the server
// refuses, 2 for bad flags, 3 with the phase it was in on timeout.
func TestWaitExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		script []api.Deployment
		token  string
		args   []string
		code   int
		want   []string
	}{
		{"reaches ready", phases("d-3", "warming", "validating", "ready"), "secret",
			[]string{"wait"}, 0, []string{"d-3: warming", "d-3: validating — gates inconclusive", "d-3: ready"}},
		{"auto-promoted past ready", phases("d-3", "warming", "promoted"), "secret",
			[]string{"wait", "--for", "ready"}, 0, []string{"d-3: promoted"}},
		{"waits for completed", phases("d-3", "promoted", "retiring", "completed"), "secret",
			[]string{"wait", "--for", "completed"}, 0, []string{"d-3: retiring", "d-3: completed"}},
		{"by id", phases("d-7", "validating", "ready"), "secret",
			[]string{"wait", "--deployment", "d-7"}, 0, []string{"d-7: ready"}},
		{"fails", phases("d-3", "warming", "validating", "failed"), "secret",
			[]string{"wait"}, exitFailure, []string{"deployment d-3 failed: gate error_rate failed: 0.229 > 0.02"}},
		{"aborted", phases("d-3", "ready", "aborted"), "secret",
			[]string{"wait", "--for", "promoted"}, exitFailure, []string{"deployment d-3 aborted"}},
		{"times out", phases("d-3", "warming", "validating"), "secret",
			[]string{"wait", "--timeout", "300ms"}, exitTimeout,
			[]string{"timed out after 300ms waiting for deployment d-3 to be ready; it is validating: gates inconclusive"}},
		{"no deployment", nil, "secret", []string{"wait"}, exitFailure, []string{"no deployment to wait for"}},
		{"unknown id", phases("d-3", "ready"), "secret", []string{"wait", "--deployment", "d-9"}, exitFailure, []string{"no deployment d-9"}},
		{"wrong token", phases("d-3", "ready"), "wrong", []string{"wait"}, exitFailure, []string{"token"}},
		{"bad --for", phases("d-3", "ready"), "secret", []string{"wait", "--for", "live"}, exitUsage, []string{`--for "live"`}},
		{"deploy --wait ready", phases("d-4", "warming", "validating", "ready"), "secret",
			[]string{"deploy", "--model", "model-v3", "--replica", "http://127.0.0.1:9", "--wait"}, 0,
			[]string{"deployment d-4: model model-v3", "waiting up to 30m0s for it to be ready", "d-4: ready"}},
		{"deploy --wait=promoted fails", phases("d-4", "warming", "ready", "failed"), "secret",
			[]string{"deploy", "--model", "model-v3", "--replica", "http://127.0.0.1:9", "--wait=promoted"}, exitFailure,
			[]string{"deployment d-4 failed: gate error_rate"}},
		{"deploy --wait times out", phases("d-4", "warming"), "secret",
			[]string{"deploy", "--model", "model-v3", "--replica", "http://127.0.0.1:9", "--wait", "--wait-timeout", "200ms"}, exitTimeout,
			[]string{"waiting for deployment d-4 to be ready; it is warming"}},
		{"deploy --wait=live", phases("d-4", "warming"), "secret",
			[]string{"deploy", "--model", "model-v3", "--replica", "http://127.0.0.1:9", "--wait=live"}, exitUsage, []string{`--wait "live"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := (&fakeAdmin{script: tt.script}).serve(t)
			args := append(tt.args, "--admin", url, "--interval", "10ms")
			if tt.args[0] == "deploy" {
				args = append(tt.args, "--admin", url)
			}
			code, stdout, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=" + tt.token}, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", w, stdout, stderr)
				}
			}
		})
	}
}

// TestWaitJSON: with --json the deployment's last state is printed as
// JSON, and nothing else on stdout.
func TestWaitJSON(t *testing.T) {
	url := (&fakeAdmin{script: phases("d-3", "warming", "ready")}).serve(t)
	code, stdout, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "wait", "--json", "--interval", "10ms", "--admin", url)
	var d api.Deployment
	if code != 0 || json.Unmarshal([]byte(stdout), &d) != nil || d.ID != "d-3" || d.Phase != "ready" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestDeployWaitAgainstGateway: deploy --wait against a real gateway
// returns 0 once the new version is ready, and then cutover wait --for
// promoted returns 0 after the promotion.
func TestDeployWaitAgainstGateway(t *testing.T) {
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1)}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, start(t, env, "serve", "--config", c.write(t)), client)
	next := mockPool(t, "model-v3", 1)[0]
	code, stdout, stderr := runCLI(t, env, "deploy", "--admin", c.admin, "--model", "model-v3", "--replica", next, "--wait", "--wait-timeout", "60s")
	if code != 0 || !strings.Contains(stdout, ": ready") {
		t.Fatalf("deploy --wait: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := client.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, env, "wait", "--admin", c.admin, "--for", "promoted", "--timeout", "60s")
	if code != 0 || !strings.Contains(stdout, ": promoted") {
		t.Fatalf("wait --for promoted: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// The old pool is "retained" in status, the API and status --watch
	// alike (regression: status called it standby).
	if _, stdout, _ = runCLI(t, env, "status", "--admin", c.admin); !regexp.MustCompile(`blue\s+retained\s`).MatchString(stdout) {
		t.Errorf("status does not call blue retained:\n%s", stdout)
	}
	st, err := client.Status(t.Context())
	if err != nil || st.Pools["blue"].Role != "retained" || st.Pools["green"].Role != "live" {
		t.Errorf("API roles: %+v %v", st, err)
	}
	var view bytes.Buffer
	renderWatch(&view, st, time.Now())
	if !regexp.MustCompile(`blue\s+retained\s`).MatchString(view.String()) {
		t.Errorf("status --watch does not call blue retained:\n%s", view.String())
	}
}

// TestBadTokenFile: an empty --token-file is named as empty (exit 2), not
// reported as a missing token, and one no HTTP client can send (two lines,
// a NUL) is named as such, not reported as "admin API unreachable" (a
// regression).
func TestBadTokenFile(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "\n", "is empty"},
		{"two lines", "tok1\ntok2\n", "holds more than one line"},
		{"NUL", "tok\x00", "holds control byte 0x00 at offset 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN="}, "status", "--token-file", path, "--admin", "http://"+freeAddr(t))
			if code != exitUsage || !strings.Contains(stderr, "--token-file") || !strings.Contains(stderr, path+" "+tc.want) {
				t.Errorf("exit %d, stderr %q", code, stderr)
			}
		})
	}
	code, _, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=abc\x01def"}, "status", "--admin", "http://"+freeAddr(t))
	if code != exitUsage || !strings.Contains(stderr, "CUTOVER_ADMIN_TOKEN holds control byte 0x01") {
		t.Errorf("token with a control byte in the environment: exit %d, stderr %q", code, stderr)
	}
}

// TestPromoteTimeoutCoversHooks: promote's default --timeout outlasts a
// before_promote hook run at its default timeout (a regression: both were
// 30 s, so the CLI gave up first, which killed the hook and refused the
// promotion with "admin API unreachable").
func TestPromoteTimeoutCoversHooks(t *testing.T) {
	cmd := newPromoteCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	fl := cmd.Flags().Lookup("timeout")
	d, err := time.ParseDuration(fl.Value.String())
	if err != nil {
		t.Fatal(err)
	}
	if d < 10*hook.DefaultTimeout || fl.DefValue != d.String() {
		t.Errorf("promote --timeout defaults to %s (shown as %s), want at least 10 hook runs (%s each) and shown as such", d, fl.DefValue, hook.DefaultTimeout)
	}
}
