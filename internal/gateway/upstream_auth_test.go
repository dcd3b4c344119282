package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
)

// TestReplicasWithAPIKey: replicas started with vLLM's --api-key are
// healthy and serve clients when their pool names the key file (issue 15
// item 9: they were always unhealthy, 401 on /v1/models, and clients got
// 503), whatever Authorization the client sends; a deployment with its own
// key file warms up, passes its synthetic suite and is promoted; the key
// shows in no status or history answer.
func TestReplicasWithAPIKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "pool.key")
	newKeyFile := filepath.Join(dir, "new.key")
	for f, k := range map[string]string{keyFile: "pool-secret-1", newKeyFile: "new-secret-2"} {
		if err := os.WriteFile(f, []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	suite := filepath.Join(dir, "suite.yaml")
	if err := os.WriteFile(suite, []byte("repeat: 3\ncases:\n  - name: hello\n    messages: [{role: user, content: hi}]\n    body: {max_tokens: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4, APIKey: "pool-secret-1"}, edit: func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = []config.WarmupRequest{{Prompt: "warm", MaxTokens: 2}, {Prompt: "warm", Stream: true, MaxTokens: 2}}
		for _, p := range c.Pools {
			p.APIKeyFile = keyFile
		}
		c.Admin.APIKeyDirs = []string{dir} // a deploy's own key file lies there
		// The synthetic suite alone judges the candidate: its requests
		// need the new replicas' key too.
		v := &c.Validation
		v.Synthetic = suite
		v.Interval = config.Duration(100 * time.Millisecond)
		v.Deadline = config.Duration(20 * time.Second)
		v.Gates = config.ValidationGates{Synthetic: config.Gate{Enabled: true, Threshold: 1, MinSamples: 3}}
	}})
	for _, p := range e.gw.Controller().Status().Pools {
		for _, r := range p.Replicas {
			if !r.Healthy {
				t.Fatalf("replica %s of %s unhealthy: %s", r.URL, p.Name, r.LastError)
			}
		}
	}
	ctx := context.Background()
	for _, clientAuth := range []string{"", "Bearer some-client-key"} {
		for _, stream := range []bool{false, true} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.traffic+"/v1/chat/completions",
				strings.NewReader(`{"model":"model-v1","messages":[{"role":"user","content":"hi"}],"stream":`+map[bool]string{true: "true", false: "false"}[stream]+`}`))
			req.Header.Set("Content-Type", "application/json")
			if clientAuth != "" {
				req.Header.Set("Authorization", clientAuth)
			}
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res, err := readResult(resp, stream)
			resp.Body.Close()
			if err != nil || res.status != http.StatusOK {
				t.Fatalf("client auth %q stream=%v: status %d %s, %v", clientAuth, stream, res.status, res.body, err)
			}
		}
	}

	var spare []*replica
	for range 2 {
		spare = append(spare, startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4, APIKey: "new-secret-2"}, ""))
	}
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare), APIKeyFile: filepath.Join(dir, "missing.key")}); err == nil ||
		!strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("deploy with a missing key file = %v, want a refusal naming it", err)
	}
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: urls(spare), APIKeyFile: newKeyFile}); err != nil {
		t.Fatal(err)
	}
	d := e.waitPhase(t, "ready", 20*time.Second)
	if g := gate(d, "synthetic_pass_rate"); g == nil || g.Verdict != "pass" {
		t.Fatalf("synthetic gate %+v, want a pass", g)
	}
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := e.chat(ctx, "model-v3", "after the switch", false, "")
	if err != nil || res.status != http.StatusOK || res.pool != "green" {
		t.Fatalf("after promote: %+v, %v; want 200 from green", res, err)
	}

	st, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := e.admin.History(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for what, v := range map[string]any{"status": st, "history": hist} {
		b, _ := json.Marshal(v)
		for _, key := range []string{"pool-secret-1", "new-secret-2"} {
			if strings.Contains(string(b), key) {
				t.Errorf("%s shows the key %s: %s", what, key, b)
			}
		}
	}
}

// TestDeployAPIKeyFileAllowed: a deploy's own api_key_file must be a file a
// pool names or lie under admin.api_key_dirs (the gateway sends its
// contents as a Bearer token to replicas the caller picks: any readable
// one-line file, such as an HF token, could be sent off); anything else,
// through a symlink or ".." too, is 400 bad_api_key_file naming the key.
func TestDeployAPIKeyFileAllowed(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	keys, pools, evil := filepath.Join(dir, "keys"), filepath.Join(dir, "pools"), filepath.Join(dir, "keys-evil")
	for _, d := range []string{keys, pools, evil} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	secretFile, poolKey, ownKey := filepath.Join(outside, "hf_token"), filepath.Join(pools, "green.key"), filepath.Join(keys, "v3.key")
	for f, k := range map[string]string{secretFile: "hf_secret", poolKey: "pool-key", ownKey: "own-key", filepath.Join(evil, "x"): "x"} {
		if err := os.WriteFile(f, []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(keys, "link.key")
	if err := os.Symlink(secretFile, link); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4}, edit: func(c *config.Config) {
		c.Pools["green"].APIKeyFile = poolKey
		c.Admin.APIKeyDirs = []string{keys}
	}})
	spare := startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name, file string
		ok         bool
	}{
		{"outside every allowed place", secretFile, false},
		{"symlink out of the directory", link, false},
		{"dot-dot out of the directory", filepath.Join(keys, "..", "..", filepath.Base(outside), "hf_token"), false},
		{"the directory's neighbour", filepath.Join(evil, "x"), false},
		{"a pool's key file", poolKey, true},
		{"under admin.api_key_dirs", ownKey, true},
	} {
		_, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{spare.URL()}, APIKeyFile: tc.file})
		if tc.ok {
			if err != nil {
				t.Fatalf("%s: deploy: %v", tc.name, err)
			}
			if _, err := e.admin.Abort(ctx); err != nil {
				t.Fatalf("%s: abort: %v", tc.name, err)
			}
			e.waitPhase(t, "aborted", 20*time.Second)
			continue
		}
		var ae *api.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Code != "bad_api_key_file" || !strings.Contains(ae.Message, "admin.api_key_dirs") {
			t.Errorf("%s: deploy = %v, want 400 bad_api_key_file naming admin.api_key_dirs", tc.name, err)
		}
	}
}

// TestDeployTooManyReplicas: a deploy of more than pool.MaxReplicas
// replicas is 400 bad_replica naming the limit (2000 in one deploy grew
// the gateway's memory, status to 1 MB and /metrics to seconds); the limit
// itself is allowed.
func TestDeployTooManyReplicas(t *testing.T) {
	e := newEnv(t, envOptions{replicas: 1})
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("http://127.0.0.%d:%d", 2+i/1000, 10000+i))
		}
		return out
	}
	_, err := e.admin.Deploy(t.Context(), api.DeployRequest{Model: "model-v3", Replicas: many(pool.MaxReplicas + 1)})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Code != "bad_replica" || !strings.Contains(ae.Message, fmt.Sprint(pool.MaxReplicas)) {
		t.Fatalf("deploy of %d replicas = %v, want 400 bad_replica naming %d", pool.MaxReplicas+1, err, pool.MaxReplicas)
	}
	if _, err := e.admin.Deploy(t.Context(), api.DeployRequest{Model: "model-v3", Replicas: many(pool.MaxReplicas)}); err != nil {
		t.Fatalf("deploy of %d replicas: %v", pool.MaxReplicas, err)
	}
}

// TestDeployGatewayItself: a deploy naming one of the gateway's own
// listeners as a replica is 400 bad_replica naming the listener, and
// changes nothing. Before, it went in: the gateway answered the health
// checks and the preflight completion by sending them on to the live
// pool, and a promote made every client request go round in a loop until
// the hops header refused it (508).
func TestDeployGatewayItself(t *testing.T) {
	e := newEnv(t, envOptions{replicas: 1})
	_, port, _ := net.SplitHostPort(e.gw.TrafficAddr())
	_, adminPort, _ := net.SplitHostPort(e.gw.AdminAddr())
	before, err := e.admin.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ url, names string }{
		{"http://" + e.gw.TrafficAddr(), "listen"},
		{"http://localhost:" + port + "/", "listen"},
		{"http://127.0.0.1:" + adminPort, "admin.listen"},
	} {
		_, err := e.admin.Deploy(t.Context(), api.DeployRequest{Model: "model-v3", Replicas: []string{"http://127.0.0.1:1", tc.url}})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Code != "bad_replica" ||
			!strings.Contains(ae.Message, "replicas[1]") || !strings.Contains(ae.Message, "the gateway's own "+tc.names) {
			t.Fatalf("deploy with replica %s = %v, want 400 bad_replica naming replicas[1] and %s", tc.url, err, tc.names)
		}
	}
	after, err := e.admin.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision || after.Deployment != nil {
		t.Fatalf("a refused deploy changed the state: revision %d → %d, deployment %+v", before.Revision, after.Revision, after.Deployment)
	}
	// Another local port is a replica like any other.
	if _, err := e.admin.Deploy(t.Context(), api.DeployRequest{Model: "model-v3", Replicas: []string{"http://127.0.0.1:1"}}); err != nil {
		t.Fatalf("deploy of another port: %v", err)
	}
}

// TestListenersAnswerUnreadableRequestsInTheErrorShape: a request net/http
// cannot read gets the error shape on the admin listener (served by
// net/http throughout) and on the traffic listener after a hand-off to
// net/http, as the traffic listener's own loop answers it. Regression:
// net/http's plain text "400 Bad Request: missing required Host header".
func TestListenersAnswerUnreadableRequestsInTheErrorShape(t *testing.T) {
	e := newEnv(t, envOptions{replicas: 1})
	chunked := "POST /v1/models HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name, addr, first string
	}{
		{"admin", e.gw.AdminAddr(), ""},
		{"traffic, after a hand-off", e.gw.TrafficAddr(), chunked},
		{"traffic, the loop", e.gw.TrafficAddr(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			if tc.first != "" {
				_, _ = io.WriteString(c, tc.first)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			_, _ = io.WriteString(c, "GET /api/v1/status HTTP/1.1\r\n\r\n") // no Host
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var v api.ErrorResponse
			body, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != http.StatusBadRequest ||
				resp.Header.Get("Content-Type") != "application/json" || v.Error.Code != "bad_request" || v.Error.Type != "invalid_request_error" || v.Error.Message == "" {
				t.Fatalf("answer %d %v %q, want 400 in the error shape", resp.StatusCode, resp.Header, body)
			}
		})
	}
}
