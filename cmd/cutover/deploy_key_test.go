package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestDeployAPIKeyFile: `cutover deploy --api-key-file` sends the file's
// absolute path (the gateway reads it), never the key.
func TestDeployAPIKeyFile(t *testing.T) {
	var (
		mu  sync.Mutex
		got []byte
	)
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(api.DeployResult{Deployment: api.Deployment{ID: "d-1", Model: "m", Pool: "green", Phase: "warming"}})
	}))
	defer admin.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "v3.key"), []byte("the-secret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "deploy", "--admin", admin.URL, "--model", "m", "--replica", "http://127.0.0.1:9", "--api-key-file", "v3.key")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CUTOVER_ADMIN_TOKEN=x")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	var req api.DeployRequest
	if err := json.Unmarshal(got, &req); err != nil {
		t.Fatalf("request body %q: %v", got, err)
	}
	if want := filepath.Join(dir, "v3.key"); req.APIKeyFile != want {
		t.Errorf("api_key_file %q, want %q", req.APIKeyFile, want)
	}
	if strings.Contains(string(got), "the-secret-key") {
		t.Errorf("the key itself was sent: %s", got)
	}
}
