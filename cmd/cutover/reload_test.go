package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/auth"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestReload: cutover reload and SIGHUP read the file again; a bad file
// changes nothing and is named (exit 1 for the CLI, an error in the log),
// live keys apply (the proxy's, health, log_level, an unowned pool's
// replicas), a changed key that cannot apply live is listed as needing a
// restart, and the gateway keeps serving throughout.
func TestReload(t *testing.T) {
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1), extra: "log_level: error\n"}
	path := c.write(t)
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", path)
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	ctl := func(args ...string) (int, string, string) {
		return runCLI(t, env, append(args, "--admin", "http://"+c.admin)...)
	}
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(want string) { t.Helper(); p.waitLog(t, want) }

	if code, out, stderr := ctl("reload", "--last"); code != 0 || !strings.Contains(out, "no reload since the start") {
		t.Fatalf("reload --last before any: exit %d %q %q", code, out, stderr)
	}
	if code, out, stderr := ctl("reload"); code != 0 || !strings.Contains(out, "reloaded "+path) || strings.Contains(out, "restart") {
		t.Fatalf("unchanged file: exit %d %q %q", code, out, stderr)
	}
	// log_level: error kept the reload's own info line out of the log;
	// the line is written before the answer.
	if strings.Contains(p.stderr.String(), "configuration reloaded") {
		t.Fatalf("log_level: error, yet the reload logged at info:\n%s", p.stderr.String())
	}

	withInfo := strings.Replace(string(original), "log_level: error", "log_level: info", 1)
	rewrite(withInfo + "proxy: {idle_timeout: 7m, client_write_timeout: 30s}\n")
	code, out, stderr := ctl("reload")
	if code != 0 || !strings.Contains(out, "applied: log_level, proxy.client_write_timeout, proxy.idle_timeout") || strings.Contains(out, "restart") {
		t.Fatalf("changed log_level and proxy settings: exit %d %q %q", code, out, stderr)
	}
	waitLog("POST /api/v1/reload: configuration reloaded")

	rewrite(withInfo + "balancer: round_robin\nproxy: {idle_timeout: 7m, client_write_timeout: 30s}\n")
	code, out, stderr = ctl("reload")
	if code != 0 || !strings.Contains(out, "needs a restart: balancer") || strings.Contains(out, "applied") {
		t.Fatalf("changed balancer: exit %d %q %q", code, out, stderr)
	}
	if res, err := client.Reload(t.Context()); err != nil || !slices.Equal(res.RestartNeeded, []string{"balancer"}) || len(res.Applied) != 0 {
		t.Fatalf("Reload() = %+v, %v", res, err)
	}

	// Health check settings apply live.
	rewrite(strings.Replace(withInfo, "interval: 200ms", "interval: 300ms\n  rise: 3", 1))
	code, out, stderr = ctl("reload")
	if code != 0 || !strings.Contains(out, "applied: health.interval, health.rise, proxy.client_write_timeout, proxy.idle_timeout") || strings.Contains(out, "restart") {
		t.Fatalf("changed health, proxy back to defaults: exit %d %q %q", code, out, stderr)
	}

	// A replica added to green, which no deployment owns, is checked at
	// once and serves.
	added := mockPool(t, "model-v2", 1)[0]
	more := strings.Replace(withInfo, c.green[0], c.green[0]+", "+added, 1)
	rewrite(more)
	code, out, stderr = ctl("reload")
	if code != 0 || !strings.Contains(out, "pools.green.replicas") || strings.Contains(out, "restart") {
		t.Fatalf("replica added: exit %d %q %q", code, out, stderr)
	}
	awaitHealthy(t, client, "green", 2)

	rewrite(more + "retention: 1h\n")
	if code, out, stderr := ctl("reload"); code != 1 || !strings.Contains(stderr, "retention") || !strings.Contains(stderr, "unknown key") {
		t.Fatalf("bad file: exit %d %q %q; want 1 naming the key", code, out, stderr)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("SIGHUP: reload refused; nothing changed")
	if code, out, stderr := ctl("reload", "--last"); code != 1 || !strings.Contains(out, "SIGHUP at") || !strings.Contains(stderr, "retention") {
		t.Fatalf("reload --last after a refused SIGHUP: exit %d %q %q; want 1 naming the key", code, out, stderr)
	}

	rewrite(more)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("SIGHUP: configuration reloaded")
	if code, out, stderr := ctl("reload", "--last"); code != 0 || !strings.Contains(out, "SIGHUP at") || !strings.Contains(out, "reloaded "+path) {
		t.Fatalf("reload --last after a SIGHUP: exit %d %q %q", code, out, stderr)
	}
	if poolOf(t, c.listen) != "blue" {
		t.Errorf("traffic not served by blue after the reloads")
	}
}

// awaitHealthy waits until pool has n replicas, all healthy.
func awaitHealthy(t *testing.T, c *api.Client, pool string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Status(t.Context())
		if err == nil && len(st.Pools[pool].Replicas) == n && st.Pools[pool].HealthyReplicas == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool %s: not %d healthy replicas after 30s: %+v, %v", pool, n, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadRotatesAdminToken: a new admin.token_file content takes effect
// on reload, without a restart: the old token is refused from then on.
func TestReloadRotatesAdminToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := serveConfig{listen: freeAddr(t), stateDir: t.TempDir(), blue: mockPool(t, "model-v1", 1)}
	admin := freeAddr(t)
	c.admin = admin + "\n  token_file: " + tokenFile // the block follows admin.listen
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN="}, "serve", "--config", c.write(t))
	waitAdmin(t, p, &api.Client{BaseURL: "http://" + admin, Token: "one"})

	if err := os.WriteFile(tokenFile, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=one"}, "reload", "--admin", "http://"+admin)
	if code != 0 || !strings.Contains(out, "applied: admin tokens") || strings.Contains(out, "restart") {
		t.Fatalf("reload: exit %d %q %q", code, out, stderr)
	}
	if _, err := (&api.Client{BaseURL: "http://" + admin, Token: "one"}).Status(t.Context()); err == nil {
		t.Errorf("the old token still works after the reload")
	}
	if _, err := (&api.Client{BaseURL: "http://" + admin, Token: "two"}).Status(t.Context()); err != nil {
		t.Errorf("the new token: %v", err)
	}
}

// waitLog waits until p has logged want; p exiting first fails the test.
func (p *proc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.stderr.String(), want) {
		select {
		case err := <-p.done:
			p.done <- err // for start's cleanup
			t.Fatalf("cutover exited before logging %q: %v", want, err)
		case <-deadline:
			t.Fatalf("no log line %q after 30s", want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestReloadClientKeys: a reload reads auth.api_keys_file again, though
// its path did not change: the removed key is refused (401) from then on,
// the new one works, and the metrics name the new key.
func TestReloadClientKeys(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys")
	writeKey := func(id, key string) {
		t.Helper()
		line, err := auth.Line(id, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keysFile, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey("team-a", "sk-a")
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(), blue: mockPool(t, "model-v1", 1),
		extra: "auth: {api_keys_file: " + keysFile + "}\n"}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", c.write(t))
	waitAdmin(t, p, &api.Client{BaseURL: "http://" + c.admin, Token: "secret"})
	status := func(key string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+c.listen+"/v1/chat/completions",
			strings.NewReader(`{"model":"llama","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Logf("key %s: %d %s", key, resp.StatusCode, b)
		}
		return resp.StatusCode
	}
	if got := status("sk-a"); got != 200 {
		t.Fatalf("key a before the reload: %d", got)
	}
	writeKey("team-b", "sk-b")
	code, out, stderr := runCLI(t, env, "reload", "--admin", "http://"+c.admin)
	if code != 0 || !strings.Contains(out, "applied: auth.api_keys_file (contents)") {
		t.Fatalf("reload: exit %d %q %q", code, out, stderr)
	}
	if got := status("sk-a"); got != 401 {
		t.Errorf("removed key after the reload: %d, want 401", got)
	}
	if got := status("sk-b"); got != 200 {
		t.Errorf("new key after the reload: %d, want 200", got)
	}
	req, _ := http.NewRequest("GET", "http://"+c.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `cutover_client_requests_total{key="team-b"} 1`) || !strings.Contains(string(b), `cutover_client_unauthorized_total 1`) {
		t.Errorf("metrics after the reload do not count the new key and the refusal:\n%s", grepLines(string(b), "cutover_client_"))
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloadPoolKeyFile: a reload reads pools.<pool>.api_key_file again
// under the same path: green's replica, refused (401) with the old key,
// is checked at once with the new one and becomes healthy.
func TestReloadPoolKeyFile(t *testing.T) {
	m, err := mockllm.New(mockllm.Config{Model: "model-v2", Tokens: 4, APIKey: "key-2"})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "green.key")
	if err := os.WriteFile(keyFile, []byte("key-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: []string{mockPoolWith(t, m)}}
	path := c.write(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "    model: model-v2\n", "    model: model-v2\n    api_key_file: "+keyFile+"\n", 1)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	p := start(t, env, "serve", "--config", path)
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	if st := waitAdmin(t, p, client); st.Pools["green"].HealthyReplicas != 0 {
		t.Fatalf("green healthy with the wrong key: %+v", st.Pools["green"])
	}
	if err := os.WriteFile(keyFile, []byte("key-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, env, "reload", "--admin", "http://"+c.admin)
	if code != 0 || !strings.Contains(out, "applied: pools.green.api_key_file (contents)") {
		t.Fatalf("reload: exit %d %q %q", code, out, stderr)
	}
	awaitHealthy(t, client, "green", 1)
}
