package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cutover-dev/cutover/internal/auth"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testKeys(t *testing.T) *auth.Keys {
	t.Helper()
	var lines []string
	for _, k := range []struct {
		id, key string
		models  []string
	}{{"team", "sk-team", nil}, {"ci", "sk-ci", []string{"model-v1"}}} {
		l, err := auth.Line(k.id, k.key, k.models)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	keys, err := auth.Parse([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return auth.New(keys)
}

// TestClientAuth: with client keys on, a request without a valid key gets
// 401 invalid_api_key in the OpenAI shape, a key limited to some models
// gets 403 for another, /health stays open; the key id (never the key)
// is in the access log, and the client's key never reaches the replica.
// Both frontends answer alike.
func TestClientAuth(t *testing.T) {
	backend := newEchoBackend(t)
	cases := []struct {
		name, method, path, auth, body string
		modelName                      string
		want                           int
		code                           string // the OpenAI error code; "" for a 2xx
	}{
		{"no key", "POST", "/v1/chat/completions", "", `{"model":"model-v1"}`, "", 401, "invalid_api_key"},
		{"wrong key", "POST", "/v1/chat/completions", "Bearer sk-nope", `{"model":"model-v1"}`, "", 401, "invalid_api_key"},
		{"basic scheme", "POST", "/v1/chat/completions", "Basic c2stdGVhbQ==", `{"model":"model-v1"}`, "", 401, "invalid_api_key"},
		{"no key for models", "GET", "/v1/models", "", "", "", 401, "invalid_api_key"},
		{"no key for a path outside /v1", "GET", "/admin", "", "", "", 401, "invalid_api_key"},
		{"team key", "POST", "/v1/chat/completions", "Bearer sk-team", `{"model":"anything"}`, "", 200, ""},
		{"ci key, its model", "POST", "/v1/chat/completions", "Bearer sk-ci", `{"model":"model-v1"}`, "", 200, ""},
		{"ci key, another model", "POST", "/v1/chat/completions", "Bearer sk-ci", `{"model":"model-v9"}`, "", 403, "model_not_allowed"},
		{"ci key, no model without model_name", "POST", "/v1/chat/completions", "Bearer sk-ci", `{"messages":[]}`, "", 403, "model_not_allowed"},
		{"ci key, model_name filled in", "POST", "/v1/chat/completions", "Bearer sk-ci", `{"messages":[]}`, "model-v1", 200, ""},
		{"ci key lists models", "GET", "/v1/models", "Bearer sk-ci", "", "", 200, ""},
		{"health open", "GET", "/health", "", "", "", 200, ""},
		// A browser's CORS preflight carries no credentials; vLLM's own
		// key check lets it through to its CORS handler (a regression:
		// 401, so browser clients that work against vLLM broke).
		{"CORS preflight open", "OPTIONS", "/v1/chat/completions", "", "", "", 200, ""},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				var logs syncBuffer
				h := newHandler(t, Options{ClientAuth: testKeys(t), AccessLog: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, tc.modelName, backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				var hdr []string
				if tc.auth != "" {
					hdr = append(hdr, "Authorization: "+tc.auth)
				}
				// Two requests on one connection: a refusal leaves it usable.
				for range 2 {
					writeRaw(t, c, rawRequest(tc.method, tc.path, hdr, tc.body))
					resp, body := readResp(t, br, tc.method)
					if resp.StatusCode != tc.want {
						t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
					}
					if tc.code != "" {
						var e struct {
							Error struct{ Message, Type, Code string }
						}
						if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" || e.Error.Type == "" {
							t.Fatalf("error body %s, want the OpenAI shape with code %s", body, tc.code)
						}
						continue
					}
					if resp.StatusCode == 200 && tc.path == "/v1/chat/completions" {
						if got := decodeEcho(t, body).Header["Authorization"]; got != nil {
							t.Errorf("the client's key reached the replica: %q", got)
						}
					}
				}
				if tc.code != "" {
					// Refusals are logged like other requests: the key id
					// when the key is known, never the key.
					l := logs.String()
					want := fmt.Sprintf("path=%s pool=blue status=%d", tc.path, tc.want)
					if n := strings.Count(l, want); n != 2 || strings.Count(l, "error="+tc.code) != 2 || strings.Contains(l, "sk-") {
						t.Errorf("access log should have 2 lines with %q and error=%s, never the key: %s", want, tc.code, l)
					}
					if tc.want == 403 && strings.Count(l, "key=ci") != 2 {
						t.Errorf("access log should name key ci: %s", l)
					}
				}
				if tc.want == 200 && tc.path == "/v1/chat/completions" && tc.auth != "" {
					id := strings.TrimPrefix(tc.auth, "Bearer sk-")
					if l := logs.String(); !strings.Contains(l, "key="+id) || strings.Contains(l, "sk-") {
						t.Errorf("access log should name key %s and never the key: %s", id, l)
					}
				}
			})
		}
	}
}

// TestModelsListPerKey: the gateway's own GET /v1/models answer (with a
// client-facing model_name) lists the name only to keys that may use it;
// a key limited to other models gets an empty list. Listing counts no
// refusal.
func TestModelsListPerKey(t *testing.T) {
	backend := newEchoBackend(t)
	cases := []struct {
		name, auth, modelName string
		want                  []string // model ids listed
	}{
		{"unlimited key", "Bearer sk-team", "llama", []string{"llama"}},
		{"limited key, its model", "Bearer sk-ci", "model-v1", []string{"model-v1"}},
		{"limited key, another model", "Bearer sk-ci", "llama", []string{}},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				keys := testKeys(t)
				h := newHandler(t, Options{ClientAuth: keys}, tc.modelName, backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("GET", "/v1/models", []string{"Authorization: " + tc.auth}, ""))
				resp, body := readResp(t, br, "GET")
				var list struct {
					Object string
					Data   []struct{ ID string }
				}
				if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != 200 || list.Object != "list" || list.Data == nil {
					t.Fatalf("status %d, body %s (%v), want a model list", resp.StatusCode, body, err)
				}
				got := []string{}
				for _, m := range list.Data {
					got = append(got, m.ID)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("listed %v, want %v", got, tc.want)
				}
				if f := keys.Counts().Forbidden["ci"]; f != 0 {
					t.Errorf("listing counted %d refusals", f)
				}
			})
		}
	}
}

// TestModelRetrievePerKey: with model_name the gateway answers OpenAI's
// "retrieve model" (GET /v1/models/{id}, which vLLM does not serve) from
// its own list, as each key sees it: a model the list does not name, or
// one the key may not use, is 404 model_not_found. An id with a "/" comes
// percent-encoded, as the SDKs send it.
func TestModelRetrievePerKey(t *testing.T) {
	var asked atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		echoHandler(w, r)
	}))
	closeAtEnd(t, backend)
	cases := []struct {
		name, auth, modelName, path string
		status                      int
		wantID                      string
	}{
		{"unlimited key", "Bearer sk-team", "llama", "/v1/models/llama", 200, "llama"},
		{"limited key, its model", "Bearer sk-ci", "model-v1", "/v1/models/model-v1", 200, "model-v1"},
		{"limited key, another model", "Bearer sk-ci", "llama", "/v1/models/llama", 404, ""},
		{"unknown model", "Bearer sk-team", "llama", "/v1/models/gpt-4", 404, ""},
		{"pool's own id", "Bearer sk-team", "llama", "/v1/models/model-v1", 404, ""},
		{"encoded slash", "Bearer sk-team", "org/llama", "/v1/models/org%2Fllama", 200, "org/llama"},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				h := newHandler(t, Options{ClientAuth: testKeys(t)}, tc.modelName, backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("GET", tc.path, []string{"Authorization: " + tc.auth}, ""))
				resp, body := readResp(t, br, "GET")
				var m struct {
					ID, Object string
					Error      struct{ Code string }
				}
				if err := json.Unmarshal([]byte(body), &m); err != nil || resp.StatusCode != tc.status {
					t.Fatalf("status %d, body %s (%v), want %d", resp.StatusCode, body, err, tc.status)
				}
				if tc.status == 200 && (m.ID != tc.wantID || m.Object != "model") {
					t.Errorf("body %s, want the model %q", body, tc.wantID)
				}
				if tc.status == 404 && m.Error.Code != "model_not_found" {
					t.Errorf("body %s, want model_not_found", body)
				}
				if n := asked.Load(); n != 0 {
					t.Errorf("the replica got %d requests; the gateway answers this itself", n)
				}
			})
		}
	}
}

// TestReplicaModelsListPerKey: without model_name a replica answers GET
// /v1/models; a key limited to some models sees only their entries (the
// replica's own fields kept), with the replica's key, never the client's;
// an unlimited key gets the replica's answer as it is.
func TestReplicaModelsListPerKey(t *testing.T) {
	const list = `{"object":"list","data":[{"id":"model-v1","object":"model","max_model_len":8192},{"id":"model-v9","object":"model"},{"id":"lora-a","object":"model","parent":"model-v1"}]}`
	var sawAuth sync.Map
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawAuth.Store(r.Header.Get("Authorization"), true)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, list)
	}))
	closeAtEnd(t, replica)
	cases := []struct {
		name, auth string
		want       []string
	}{
		{"unlimited key", "Bearer sk-team", []string{"model-v1", "model-v9", "lora-a"}},
		{"limited key", "Bearer sk-ci", []string{"model-v1"}},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				keys := testKeys(t)
				h := newHandler(t, Options{ClientAuth: keys}, "", replica.URL)
				c, br := dialRaw(t, fe.start(t, h))
				for range 2 { // the connection stays usable
					writeRaw(t, c, rawRequest("GET", "/v1/models", []string{"Authorization: " + tc.auth}, ""))
					resp, body := readResp(t, br, "GET")
					var got struct {
						Object string
						Data   []map[string]any
					}
					if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 || got.Object != "list" {
						t.Fatalf("status %d, body %s (%v), want a model list", resp.StatusCode, body, err)
					}
					var ids []string
					for _, m := range got.Data {
						ids = append(ids, fmt.Sprint(m["id"]))
					}
					if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
						t.Fatalf("listed %v, want %v", ids, tc.want)
					}
					if tc.name == "limited key" && got.Data[0]["max_model_len"] != float64(8192) {
						t.Errorf("the replica's fields were lost: %s", body)
					}
				}
				if f := keys.Counts().Forbidden["ci"]; f != 0 {
					t.Errorf("listing counted %d refusals", f)
				}
				sawAuth.Range(func(k, _ any) bool {
					if strings.Contains(k.(string), "sk-") {
						t.Errorf("the client's key reached the replica: %q", k)
					}
					return true
				})
			})
		}
	}
}
