package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/driver/lbtest"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/tlsfile/tlstest"
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
		writeConfigFile(t, c, file)
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
	if res, err := e.admin.Reload(ctx); err != nil || !slices.Contains(res.Applied, "pools.green.api_key_file (contents)") {
		t.Fatalf("reload: %+v, %v; want the inherited key file's contents applied", res, err)
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

// writeConfigFile writes c to file as YAML, for a gateway started with
// gateway.WithConfigFile(file) to reload: every key but the drivers'
// sections when c has no driver (builtin refuses them).
func writeConfigFile(t *testing.T, c *config.Config, file string) {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if c.Driver == "" || c.Driver == "builtin" {
		delete(m, "nginx")
		delete(m, "haproxy")
	}
	if b, err = yaml.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeFiles writes each file's contents and a newline.
func writeFiles(t *testing.T, files map[string]string) {
	t.Helper()
	for f, v := range files {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReloadOwnedPoolKeyFileNotApplied: once a deployment with a key file
// of its own owns green, a change of pools.green.api_key_file (its path or
// its contents) changes nothing and is listed as not applied (it was
// listed as applied).
func TestReloadOwnedPoolKeyFileNotApplied(t *testing.T) {
	dir := t.TempDir()
	keyFile, otherKey, ownKey := filepath.Join(dir, "green.key"), filepath.Join(dir, "other.key"), filepath.Join(dir, "own.key")
	tokenFile, file := filepath.Join(dir, "token"), filepath.Join(dir, "cutover.yaml")
	writeFiles(t, map[string]string{keyFile: "k1", otherKey: "k2", ownKey: "own", tokenFile: testToken})
	t.Setenv("CUTOVER_ADMIN_TOKEN", "")
	var cfg *config.Config
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4}, opts: []gateway.Option{gateway.WithConfigFile(file)}, edit: func(c *config.Config) {
		c.Admin.TokenFile = tokenFile
		c.Rollout.Warmup.Requests = nil
		c.Pools["green"].APIKeyFile = keyFile
		c.Admin.APIKeyDirs = []string{dir}
		writeConfigFile(t, c, file)
		cfg = c
	}})
	spare := startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")
	ctx := context.Background()
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{spare.URL()}, APIKeyFile: ownKey}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		edit      func()
	}{
		{"contents", "pools.green.api_key_file (contents)", func() { writeFiles(t, map[string]string{keyFile: "k1-rotated"}) }},
		{"path", "pools.green.api_key_file", func() { cfg.Pools["green"].APIKeyFile = otherKey; writeConfigFile(t, cfg, file) }},
	} {
		tc.edit()
		res, err := e.admin.Reload(ctx)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Contains(res.NotApplied, tc.key) || slices.ContainsFunc(res.Applied, func(k string) bool { return strings.HasPrefix(k, "pools.green") }) {
			t.Errorf("%s: reload %+v, want %s not applied", tc.name, res, tc.key)
		}
	}
	if p := e.gw.Controller().Pool("green"); p.Replicas[0].Authorization != "Bearer own" {
		t.Errorf("green's replica carries %q, want the deployment's own key", p.Replicas[0].Authorization)
	}
}

// TestRefusedReloadKeepsTLSCertificate: a reload that the load balancer
// refuses (nginx -t fails on the new pools: 502 apply_failed) changes
// nothing, the admin listener's certificate included: the new certificate
// files are read first and used only once the pools were taken (they were
// swapped before the pools were refused).
func TestRefusedReloadKeepsTLSCertificate(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed")
	}
	dir := t.TempDir()
	certDir, tokenFile, file := filepath.Join(dir, "admin"), filepath.Join(dir, "token"), filepath.Join(dir, "cutover.yaml")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t, "gateway CA")
	certFile, keyFile := ca.WritePair(t, certDir, "admin-A")
	writeFiles(t, map[string]string{tokenFile: testToken})
	t.Setenv("CUTOVER_ADMIN_TOKEN", "")
	var n *lbtest.Nginx
	var cfg *config.Config
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4}, servedName: servedName, opts: []gateway.Option{gateway.WithConfigFile(file)}, edit: func(c *config.Config) {
		n = lbtest.StartNginx(t, c.Pools["blue"].Replicas)
		n.Configure(c)
		c.Admin.TokenFile = tokenFile
		c.Admin.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
		writeConfigFile(t, c, file)
		cfg = c
	}})
	adminCN := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", e.gw.AdminAddr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := adminCN(); cn != "admin-A" {
		t.Fatalf("admin certificate %s at start, want admin-A", cn)
	}

	ca.WritePair(t, certDir, "admin-B")
	// A new replica of the live pool: nginx's upstreams change.
	added := startReplica(t, mockllm.Config{Model: servedName, AnswerAs: testModels["blue"], Tokens: 4}, "")
	cfg.Pools["blue"].Replicas = append(cfg.Pools["blue"].Replicas, added.URL())
	writeConfigFile(t, cfg, file)
	if err := os.WriteFile(filepath.Join(n.Dir, "extra-broken.conf"), []byte("bogus_directive on;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.gw.Reload(context.Background())
	var ref *rollout.Refusal
	if !errors.As(err, &ref) || ref.Code != "apply_failed" {
		t.Fatalf("reload with nginx broken: %v, want apply_failed", err)
	}
	if cn := adminCN(); cn != "admin-A" {
		t.Errorf("admin certificate %s after a refused reload, want admin-A: nothing changes", cn)
	}

	if err := os.Remove(filepath.Join(n.Dir, "extra-broken.conf")); err != nil {
		t.Fatal(err)
	}
	if res, err := e.gw.Reload(context.Background()); err != nil || !slices.Contains(res.Applied, "TLS certificates") {
		t.Fatalf("reload with nginx fixed: %+v, %v", res, err)
	}
	if cn := adminCN(); cn != "admin-B" {
		t.Errorf("admin certificate %s after the reload, want admin-B", cn)
	}
}
