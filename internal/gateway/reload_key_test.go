package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// keyedReplica is a simulated replica that needs Authorization: Bearer
// key (or, while set, Bearer also) for /v1/*, where both can change (a
// rotated key), and records the
// Authorization of each request whose body holds one of the watched
// markers.
type keyedReplica struct {
	key, also atomic.Pointer[string]
	mock      *mockllm.Server

	mu   sync.Mutex
	seen map[string][]string // marker -> Authorization of each request carrying it

	// hold blocks the first request carrying holdMarker until release is
	// closed, after closing held.
	holdMarker    string
	held, release chan struct{}
	holdOnce      sync.Once
}

func (k *keyedReplica) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	auth := r.Header.Get("Authorization")
	ok := auth == "Bearer "+*k.key.Load()
	if a := k.also.Load(); a != nil && auth == "Bearer "+*a {
		ok = true
	}
	for _, m := range []string{"shadow-probe", "synthetic-probe"} {
		if bytes.Contains(body, []byte(m)) {
			k.mu.Lock()
			k.seen[m] = append(k.seen[m], auth)
			k.mu.Unlock()
		}
	}
	if strings.HasPrefix(r.URL.Path, "/v1") && !ok {
		http.Error(w, `{"error":{"message":"bad key","type":"auth","code":"401"}}`, http.StatusUnauthorized)
		return
	}
	if k.holdMarker != "" && bytes.Contains(body, []byte(k.holdMarker)) {
		first := false
		k.holdOnce.Do(func() { first = true })
		if first {
			close(k.held)
			<-k.release
		}
	}
	k.mock.ServeHTTP(w, r)
}

func (k *keyedReplica) auths(marker string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.seen[marker]...)
}

// TestReloadRotatesCandidateKeyDuringValidation: a reload that rotates the
// key file a deployment's candidate inherits (pools.green.api_key_file)
// while it is validated rebuilds green's replicas with the new key; the
// shadow copies and synthetic requests sent after it carry the new key
// (they kept the replicas of the window's start and sent the old one: the
// candidate answered 401 and the synthetic gate failed the deployment).
func TestReloadRotatesCandidateKeyDuringValidation(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "green.key")
	tokenFile := filepath.Join(dir, "token")
	suite := filepath.Join(dir, "suite.yaml")
	file := filepath.Join(dir, "cutover.yaml")
	for f, v := range map[string]string{keyFile: "old-key", tokenFile: testToken,
		suite: "repeat: 3\ncases:\n  - name: probe\n    messages: [{role: user, content: synthetic-probe}]\n    body: {max_tokens: 2}\n"} {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CUTOVER_ADMIN_TOKEN", "")
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4}, opts: []gateway.Option{gateway.WithConfigFile(file)}, edit: func(c *config.Config) {
		c.Admin.TokenFile = tokenFile
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = nil
		c.Pools["green"].APIKeyFile = keyFile
		v := &c.Validation
		v.Shadow.Percent = 100
		v.Synthetic = suite
		v.Interval = config.Duration(100 * time.Millisecond)
		v.Deadline = config.Duration(time.Hour)
		v.Gates = config.ValidationGates{Synthetic: config.Gate{Enabled: true, Threshold: 1, MinSamples: 3}}
		b, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any // every key but the drivers' sections, which builtin refuses
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "nginx")
		delete(m, "haproxy")
		if b, err = yaml.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}})
	mock, err := mockllm.New(mockllm.Config{Model: "model-v3", Tokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	cand := &keyedReplica{mock: mock, seen: map[string][]string{}, holdMarker: "synthetic-probe",
		held: make(chan struct{}), release: make(chan struct{})}
	oldKey, newKey := "old-key", "new-key"
	cand.key.Store(&oldKey)
	srv := httptest.NewServer(cand)
	t.Cleanup(srv.Close)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(cand.release) }) }
	t.Cleanup(release)

	ctx := context.Background()
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{srv.URL}}); err != nil {
		t.Fatal(err)
	}
	select { // the suite's first request, sent with the old key, waits
	case <-cand.held:
	case <-time.After(20 * time.Second):
		t.Fatal("the synthetic suite never reached the candidate")
	}

	// The key rotates: the replica takes both while the file changes and
	// the gateway reloads it, then only the new one.
	cand.also.Store(&newKey)
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	cand.key.Store(&newKey)

	waitFor(t, "a shadow copy at the candidate", 20*time.Second, func() bool {
		if len(cand.auths("shadow-probe")) > 0 {
			return true
		}
		res, err := e.chat(ctx, "model-v1", "shadow-probe", false, "")
		if err != nil || res.status != http.StatusOK {
			t.Fatalf("live request: %+v, %v", res, err)
		}
		return false
	})
	if got := cand.auths("shadow-probe"); got[0] != "Bearer "+newKey {
		t.Errorf("shadow copy after the reload carried %q, want the new key", got[0])
	}

	release()
	d := e.waitPhase(t, "ready", 20*time.Second)
	if g := gate(d, "synthetic_pass_rate"); g == nil || g.Verdict != "pass" {
		t.Errorf("synthetic gate %+v, want a pass", g)
	}
	got := cand.auths("synthetic-probe")
	if len(got) != 3 {
		t.Fatalf("candidate saw %d synthetic requests, want 3: %q", len(got), got)
	}
	for i, a := range got[1:] {
		if a != "Bearer "+newKey {
			t.Errorf("synthetic request %d after the reload carried %q, want the new key", i+2, a)
		}
	}
}
