package gateway_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/auth"
	"github.com/cutover-dev/cutover/internal/config"
)

// TestClientKeysAndReadToken: with auth.api_keys_file clients need a key
// (401 without), a key limited to some models gets 403 for another, and
// the metrics count per key id; the admin.read_token_file token reads
// status, history, metrics and the dashboard and is refused (403 JSON) for
// every write.
func TestClientKeysAndReadToken(t *testing.T) {
	dir := t.TempDir()
	team, err := auth.Line("team", "sk-team-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := auth.Line("ci", "sk-ci-1", []string{"llama"})
	if err != nil {
		t.Fatal(err)
	}
	keysFile, readFile := filepath.Join(dir, "keys"), filepath.Join(dir, "read.token")
	if err := os.WriteFile(keysFile, []byte(team+"\n"+ci+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readFile, []byte("read-only-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{modelName: "llama", edit: func(c *config.Config) {
		c.Auth.APIKeysFile = keysFile
		c.Admin.ReadTokenFile = readFile
	}})
	ctx := context.Background()
	do := func(base, method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	chat := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	}
	traffic := []struct {
		name, key, body string
		want            int
		inBody          string
	}{
		{"no key", "", chat("llama"), 401, "invalid_api_key"},
		{"unknown key", "sk-guess", chat("llama"), 401, "invalid_api_key"},
		{"team key", "sk-team-1", chat("llama"), 200, ""},
		{"ci key, its model", "sk-ci-1", chat("llama"), 200, ""},
		{"ci key, the pool's own id", "sk-ci-1", chat("model-v1"), 403, "model_not_allowed"},
	}
	for _, tc := range traffic {
		if got, body := do(e.traffic, http.MethodPost, "/v1/chat/completions", tc.key, tc.body); got != tc.want || !strings.Contains(body, tc.inBody) {
			t.Errorf("%s: status %d %s, want %d with %q", tc.name, got, body, tc.want, tc.inBody)
		}
	}

	admin := e.admin.BaseURL
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/api/v1/status", 200},
		{http.MethodGet, "/api/v1/history", 200},
		{http.MethodGet, "/api/v1/deployments", 200},
		{http.MethodGet, "/metrics", 200},
		{http.MethodGet, "/", 200},
		{http.MethodPost, "/api/v1/promote", 403},
		{http.MethodPost, "/api/v1/rollback", 403},
		{http.MethodPost, "/api/v1/deployments", 403},
		{http.MethodPost, "/api/v1/abort", 403},
		{http.MethodPost, "/api/v1/retire", 403},
		{http.MethodGet, "/debug/pprof/", 403},
	} {
		got, body := do(admin, tc.method, tc.path, "read-only-token", "")
		if got != tc.want {
			t.Errorf("read-only token: %s %s = %d %s, want %d", tc.method, tc.path, got, body, tc.want)
		}
		if tc.want == 403 && !strings.Contains(body, `"read_only_token"`) {
			t.Errorf("read-only token: %s %s answered %s, want a JSON refusal", tc.method, tc.path, body)
		}
	}
	if st, err := e.admin.Status(ctx); err != nil || st.Live != "blue" {
		t.Fatalf("a refused write changed the state: %+v %v", st, err)
	}
	_, metrics := do(admin, http.MethodGet, "/metrics", "read-only-token", "")
	for _, want := range []string{`cutover_client_requests_total{key="team"} 1`, `cutover_client_requests_total{key="ci"} 2`,
		`cutover_client_forbidden_total{key="ci"} 1`, `cutover_client_unauthorized_total 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, "sk-") {
		t.Error("metrics show a client key")
	}
	if got, _ := do(admin, http.MethodGet, "/api/v1/status", "wrong", ""); got != 401 {
		t.Errorf("wrong admin token: %d, want 401", got)
	}
}
