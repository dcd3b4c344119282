package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func assertOpenAIError(t *testing.T, body, code string) {
	t.Helper()
	var v struct {
		Error *struct {
			Message *string `json:"message"`
			Type    *string `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Error == nil || v.Error.Message == nil || v.Error.Type == nil || v.Error.Code == nil {
		t.Fatalf("body %q is not an OpenAI error {error:{message,type,code}}", body)
	}
	if *v.Error.Code != code {
		t.Errorf("error code %q, want %q (body %s)", *v.Error.Code, code, body)
	}
}

// TestModelNames: with model_name set, clients use one name across
// versions; the gateway fills in or rewrites model and refuses others.
func TestModelNames(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 3}})
	ctx := context.Background()
	tests := []struct {
		name, model string
		status      int
	}{
		{"client name", "llama", 200},
		{"no model", "", 200},
		{"pool's own id", "model-v1", 200},
		{"other pool's id", "model-v2", 404},
		{"unknown", "gpt-4o", 404},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			res, err := e.chat(ctx, tt.model, "hi", stream, "")
			if err != nil {
				t.Fatalf("%s stream=%v: %v", tt.name, stream, err)
			}
			if res.status != tt.status {
				t.Errorf("%s stream=%v: status %d, want %d (%s)", tt.name, stream, res.status, tt.status, res.body)
				continue
			}
			if res.status == 404 {
				assertOpenAIError(t, res.body, "model_not_found")
			} else if res.model != "model-v1" || res.text != mockllm.Answer("model-v1", "hi", 3) {
				t.Errorf("%s stream=%v: model %q text %q", tt.name, stream, res.model, res.text)
			}
		}
	}
	// /v1/models lists the client-facing name.
	resp, err := e.http.Get(e.traffic + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID, Root    string
			MaxModelLen int `json:"max_model_len"`
		}
	}
	// max_model_len as the replicas list it (clients size prompts by it).
	if err := jsonDecode(resp, &list); err != nil || len(list.Data) != 1 || list.Data[0].ID != "llama" || list.Data[0].Root != "model-v1" ||
		list.Data[0].MaxModelLen != mockllm.DefaultMaxModelLen {
		t.Errorf("/v1/models = %+v (%v), want llama with root model-v1 and max_model_len %d", list, err, mockllm.DefaultMaxModelLen)
	}
	if resp.Header.Get("X-Cutover-Pool") != "blue" {
		t.Errorf("/v1/models without X-Cutover-Pool")
	}
	// After a promote the same client name reaches the new version.
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := e.chat(ctx, "llama", "hi", true, "")
	if err != nil || res.pool != "green" || res.model != "model-v2" {
		t.Errorf("after promote: %+v %v, want model-v2 from green", res, err)
	}
}

// TestPassThroughWithoutModelName leaves bodies untouched.
func TestPassThroughWithoutModelName(t *testing.T) {
	e := newEnv(t, envOptions{})
	res, err := e.chat(context.Background(), "llama", "hi", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.status != 404 || !strings.Contains(res.body, "llama") {
		t.Errorf("without model_name a foreign model must reach vLLM and get its 404; got %d %s", res.status, res.body)
	}
	resp, err := e.http.Get(e.traffic + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Data []struct{ ID string } }
	if err := jsonDecode(resp, &list); err != nil || len(list.Data) != 1 || list.Data[0].ID != "model-v1" {
		t.Errorf("/v1/models = %+v, want the replica's own list", list)
	}
}

// TestGarbageDoesNotWedge: malformed bodies, oversize bodies, unknown
// paths and raw garbage on the socket get errors, and the gateway keeps
// serving.
func TestGarbageDoesNotWedge(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", edit: func(c *config.Config) { c.Proxy.MaxBodyBytes = 1 << 20 }})
	post := func(path string, body []byte, contentLength int64) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, e.traffic+path, bytes.NewReader(body))
		if contentLength >= 0 {
			req.ContentLength = contentLength
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	cases := []struct {
		name   string
		path   string
		body   []byte
		status int
		code   string
	}{
		{"binary", "/v1/chat/completions", []byte{0, 1, 2, 0xff, '{'}, 400, ""},
		{"truncated json", "/v1/chat/completions", []byte(`{"model":"llama","messages":[`), 400, ""},
		{"deep nesting", "/v1/chat/completions", []byte(`{"model":"llama","x":` + deep + `}`), 400, ""},
		{"array", "/v1/completions", []byte(`[1,2,3]`), 400, ""},
		{"too large", "/v1/chat/completions", bytes.Repeat([]byte("a"), 2<<20), 413, "request_too_large"},
		{"unknown path", "/admin", []byte(`{}`), 404, "unknown_path"},
	}
	for _, c := range cases {
		status, body := post(c.path, c.body, -1)
		if status != c.status && !(c.status == 400 && status >= 400 && status < 500) {
			t.Errorf("%s: status %d, want %d (%s)", c.name, status, c.status, body)
		}
		if c.code != "" {
			assertOpenAIError(t, body, c.code)
		}
	}
	// Chunked upload over the limit (no Content-Length).
	req, _ := http.NewRequest(http.MethodPost, e.traffic+"/v1/chat/completions", struct{ *bytes.Reader }{bytes.NewReader(bytes.Repeat([]byte("a"), 2<<20))})
	req.ContentLength = -1
	if resp, err := e.http.Do(req); err != nil || resp.StatusCode != 413 {
		t.Errorf("chunked oversize: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Raw garbage on a socket.
	for _, junk := range []string{"\x00\x01\x02garbage\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"} {
		c, err := net.Dial("tcp", e.gw.TrafficAddr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, junk)
		_ = c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := e.chat(ctx, "llama", "still alive?", true, "")
	if err != nil || res.status != 200 {
		t.Fatalf("gateway wedged after garbage: %+v %v", res, err)
	}
}

// TestBusyPortIsAnError: a listen address in use fails New cleanly (a
// regression: the cleanup once ran on a nil gateway and panicked), and
// releases the state store for the next try.
func TestBusyPortIsAnError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	for range 2 { // the second try proves the store was closed
		_, err := gateway.New(context.Background(), busyConfig(t, dir, busy.Addr().String()), testToken, nil)
		if err == nil || !strings.Contains(err.Error(), "admin.listen") {
			t.Fatalf("New with a busy admin port: %v", err)
		}
	}
}

// TestBusyPortWritesNoState: a start that fails on a busy port persists
// nothing (a regression: the first start's "init" revision was written
// before the bind failed, so the next start was no longer the first).
func TestBusyPortWritesNoState(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := busyConfig(t, dir, "127.0.0.1:0")
	cfg.Listen = busy.Addr().String()
	if _, err := gateway.New(context.Background(), cfg, testToken, nil); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("New with a busy traffic port: %v, want a listen error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cutover.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("state file after a failed start: stat = %v, want it not to exist", err)
	}
}

// TestUnusableStateDirIsAnError: a state_dir the store cannot open fails
// New with the store's message (a regression: a nil store in an interface
// looked open to the cleanup, which panicked).
func TestUnusableStateDirIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := busyConfig(t, filepath.Join(file, "state"), "127.0.0.1:0")
	_, err := gateway.New(context.Background(), cfg, testToken, nil)
	if err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Fatalf("New with a state_dir under a file: %v, want an error naming state_dir", err)
	}
}

func busyConfig(t *testing.T, dir, adminAddr string) *config.Config {
	t.Helper()
	m := startReplica(t, mockllm.Config{Model: "model-v1"}, "")
	cfg := config.Default()
	cfg.Listen, cfg.Admin.Listen, cfg.StateDir = "127.0.0.1:0", adminAddr, dir
	cfg.Pools = map[string]*config.Pool{"blue": {Model: "model-v1", Replicas: []string{m.URL()}}, "green": {Model: "model-v2"}}
	return cfg
}

// TestBadAdminCallsChangeNothing: malformed or invalid admin calls get a
// 4xx JSON error with a message, and the state does not move.
func TestBadAdminCallsChangeNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	cases := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/v1/deployments", `{not json`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":["http://127.0.0.1:9"],"colour":"blue"}`, 400},
		{"POST", "/api/v1/deployments", `{"model":"","replicas":["http://127.0.0.1:9"]}`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":[]}`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":["ftp://x"]}`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":["` + e.pools["blue"][0].URL() + `"]}`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":["http://127.0.0.1:9"]} {}`, 400},
		{"POST", "/api/v1/retire", `{"force":"yes"}`, 400},
		{"POST", "/api/v1/retire", `{"force":true}]`, 400}, // a stray ] or } after the value
		{"POST", "/api/v1/retire", `{"force":true}}`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":["http://127.0.0.1:9"]}]junk`, 400},
		{"POST", "/api/v1/deployments", `{"model":"m","replicas":["http://a;b:9"]}`, 400},
		{"GET", "/api/v1/deployments/d-404", ``, 404},
		{"DELETE", "/api/v1/status", ``, 405}, // "DELETE /api/v1/status: use GET", Allow: GET
		{"GET", "/api/v1/promote", ``, 405},
		{"POST", "/api/v1/deployments/d-1", ``, 405},
		{"GET", "/api/v1/nothing", ``, 404}, // "no admin endpoint GET /api/v1/nothing"
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, e.admin.BaseURL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Message string } `json:"error"`
		}
		derr := jsonDecode(resp, &body)
		if resp.StatusCode != c.status || derr != nil || body.Error.Message == "" {
			t.Errorf("%s %s %s: status %d (%v) message %q, want %d with a message", c.method, c.path, c.body, resp.StatusCode, derr, body.Error.Message, c.status)
		}
		if allow := resp.Header.Get("Allow"); (c.status == http.StatusMethodNotAllowed) != (allow != "") {
			t.Errorf("%s %s: status %d with Allow %q", c.method, c.path, resp.StatusCode, allow)
		}
	}
	if st := e.gw.Controller().Status(); st.Revision != 1 || st.Deployment != nil {
		t.Errorf("bad calls changed the state: revision %d deployment %+v", st.Revision, st.Deployment)
	}
}

// TestLoRAAdaptersWithModelName: with model_name set, a LoRA adapter the
// live replicas list on /v1/models is served by its own name (it was 404
// model_not_found) and listed by the gateway's /v1/models beside the
// client-facing name, with that name as its parent.
func TestLoRAAdaptersWithModelName(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 3, LoRAModules: []string{"sql-lora"}}})
	ctx := context.Background()
	for _, stream := range []bool{false, true} {
		res, err := e.chat(ctx, "sql-lora", "hi", stream, "")
		if err != nil || res.status != 200 || res.model != "sql-lora" {
			t.Fatalf("stream=%v: %d %q %v %s, want the adapter's answer", stream, res.status, res.model, err, res.body)
		}
	}
	if res, err := e.chat(ctx, "other-lora", "hi", false, ""); err != nil || res.status != 404 {
		t.Fatalf("an adapter no replica lists: %d %v, want 404", res.status, err)
	}
	resp, err := e.http.Get(e.traffic + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID     string
			Parent *string
		}
	}
	if err := jsonDecode(resp, &list); err != nil || len(list.Data) != 2 || list.Data[0].ID != "llama" || list.Data[0].Parent != nil ||
		list.Data[1].ID != "sql-lora" || list.Data[1].Parent == nil || *list.Data[1].Parent != "llama" {
		t.Fatalf("/v1/models = %+v (%v), want llama, then sql-lora with parent llama", list, err)
	}
}
