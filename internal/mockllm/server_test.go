package mockllm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantField string // "" means valid
	}{
		{"minimal", Config{Model: "m"}, ""},
		{"everything set", Config{Model: "m", TTFT: time.Second, ITL: time.Millisecond, Tokens: 4, MaxConcurrent: 2,
			ErrorRate: 1, StreamErrorRate: 0.5, ExtraLatency: 1, StartupPeriod: 1, FailHealth: true, Seed: -3, MaxModelLen: 10}, ""},
		{"no model", Config{}, "Model"},
		{"negative TTFT", Config{Model: "m", TTFT: -1}, "TTFT"},
		{"negative ITL", Config{Model: "m", ITL: -1}, "ITL"},
		{"negative extra latency", Config{Model: "m", ExtraLatency: -1}, "ExtraLatency"},
		{"negative startup", Config{Model: "m", StartupPeriod: -1}, "StartupPeriod"},
		{"negative tokens", Config{Model: "m", Tokens: -1}, "Tokens"},
		{"tokens above context", Config{Model: "m", Tokens: 100, MaxModelLen: 100}, "Tokens"},
		{"negative concurrency", Config{Model: "m", MaxConcurrent: -1}, "MaxConcurrent"},
		{"negative context", Config{Model: "m", MaxModelLen: -1}, "MaxModelLen"},
		{"error rate above 1", Config{Model: "m", ErrorRate: 1.5}, "ErrorRate"},
		{"error rate NaN", Config{Model: "m", ErrorRate: math.NaN()}, "ErrorRate"},
		{"negative stream error rate", Config{Model: "m", StreamErrorRate: -0.1}, "StreamErrorRate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			var fe *FieldError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField):
				t.Fatalf("New: %v, want a FieldError for %s", err, tt.wantField)
			case tt.wantField != "" && !strings.Contains(err.Error(), tt.wantField):
				t.Errorf("error %q does not name %s", err, tt.wantField)
			}
		})
	}
}

func TestModels(t *testing.T) {
	_, ts := newTestServer(t, Config{Model: "org/Model-7B", MaxModelLen: 4096})
	status, _, body := do(t, http.MethodGet, ts.URL+"/v1/models", "")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string           `json:"id"`
			Object      string           `json:"object"`
			Created     int64            `json:"created"`
			OwnedBy     string           `json:"owned_by"`
			Root        string           `json:"root"`
			Parent      *string          `json:"parent"`
			MaxModelLen int              `json:"max_model_len"`
			Permission  []map[string]any `json:"permission"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if list.Object != "list" || len(list.Data) != 1 {
		t.Fatalf("got %s", body)
	}
	m := list.Data[0]
	if m.ID != "org/Model-7B" || m.Object != "model" || m.OwnedBy != "vllm" || m.Root != m.ID ||
		m.Parent != nil || m.MaxModelLen != 4096 || m.Created == 0 || len(m.Permission) != 1 ||
		m.Permission[0]["object"] != "model_permission" {
		t.Errorf("model entry %+v", m)
	}
}

// TestHealthAndStartup walks a replica through loading, ready and failing.
func TestHealthAndStartup(t *testing.T) {
	s, err := New(Config{Model: testModel, StartupPeriod: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64 // offset from the real start
	s.now = func() time.Time { return s.start.Add(time.Duration(clock.Load())) }
	ts := httptest.NewServer(s)
	defer ts.Close()

	type check struct {
		method, path, body string
		want               int
	}
	loading := []check{
		{"GET", "/health", "", 503},
		{"GET", "/v1/models", "", 503},
		{"POST", "/v1/chat/completions", chatBody(testModel, "hi", ""), 503},
		{"GET", "/metrics", "", 503},
		{"GET", "/mock/faults", "", 200},
	}
	ready := []check{
		{"GET", "/health", "", 200},
		{"HEAD", "/health", "", 200},
		{"POST", "/health", "", 405},
		{"GET", "/v1/models", "", 200},
		{"POST", "/v1/chat/completions", chatBody(testModel, "hi", ""), 200},
	}
	failing := []check{
		{"GET", "/health", "", 503},
		{"POST", "/v1/chat/completions", chatBody(testModel, "hi", ""), 200},
	}
	steps := []struct {
		name   string
		before func()
		checks []check
	}{
		{"loading", func() {}, loading},
		{"ready", func() { clock.Store(int64(time.Minute)) }, ready},
		{"failing", func() { s.SetFailHealth(true) }, failing},
		{"recovered", func() { s.SetFailHealth(false) }, ready},
	}
	for _, st := range steps {
		st.before()
		for _, c := range st.checks {
			status, _, body := do(t, c.method, ts.URL+c.path, c.body)
			if status != c.want {
				t.Errorf("%s: %s %s = %d, want %d", st.name, c.method, c.path, status, c.want)
			}
			if c.path == "/health" && c.want != 405 && body != "" {
				t.Errorf("%s: /health body %q, want empty", st.name, body)
			}
		}
	}
}

func TestFailHealthConfig(t *testing.T) {
	_, ts := newTestServer(t, Config{FailHealth: true})
	if status, _, _ := do(t, http.MethodGet, ts.URL+"/health", ""); status != 503 {
		t.Errorf("status %d, want 503", status)
	}
}

// TestFaultsEndpoint reads and changes faults over HTTP.
func TestFaultsEndpoint(t *testing.T) {
	s, ts := newTestServer(t, Config{ErrorRate: 0.25, TTFT: 20 * time.Millisecond})
	tests := []struct {
		name, method, body string
		wantStatus         int
		want               string // JSON of the faults afterwards
	}{
		{"get initial", "GET", "", 200,
			`{"fail_health":false,"error_rate":0.25,"stream_error_rate":0,"extra_latency_ms":0,"ttft_ms":20,"itl_ms":0}`},
		{"post some fields", "POST", `{"fail_health":true,"ttft_ms":0.5,"itl_ms":3}`, 200,
			`{"fail_health":true,"error_rate":0.25,"stream_error_rate":0,"extra_latency_ms":0,"ttft_ms":0.5,"itl_ms":3}`},
		{"post rates and latency", "POST", `{"error_rate":0,"stream_error_rate":1,"extra_latency_ms":7}`, 200,
			`{"fail_health":true,"error_rate":0,"stream_error_rate":1,"extra_latency_ms":7,"ttft_ms":0.5,"itl_ms":3}`},
		{"bad rate changes nothing", "POST", `{"fail_health":false,"error_rate":2}`, 400, ""},
		{"negative latency", "POST", `{"ttft_ms":-1}`, 400, ""},
		{"unknown field", "POST", `{"fail_helth":true}`, 400, ""},
		{"malformed", "POST", `{`, 400, ""},
		{"data after the object", "POST", `{"error_rate":0.5} garbage`, 400, ""},
		{"a second object", "POST", `{"error_rate":0.25}{"error_rate":7}`, 400, ""},
		{"explicit null", "POST", `{"error_rate":null}`, 400, ""},
		{"wrong method", "DELETE", "", 405, ""},
		{"get after errors", "GET", "", 200,
			`{"fail_health":true,"error_rate":0,"stream_error_rate":1,"extra_latency_ms":7,"ttft_ms":0.5,"itl_ms":3}`},
	}
	for _, tt := range tests {
		status, _, body := do(t, tt.method, ts.URL+"/mock/faults", tt.body)
		if status != tt.wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", tt.name, status, tt.wantStatus, body)
		}
		if tt.want != "" && body != tt.want {
			t.Errorf("%s: body %s, want %s", tt.name, body, tt.want)
		}
	}
	if !s.faults.failHealth.Load() || s.faults.ttft.Load() != int64(500*time.Microsecond) ||
		s.faults.extraLatency.Load() != int64(7*time.Millisecond) {
		t.Errorf("faults not applied to the server")
	}
}

func TestSettersClamp(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	s.SetErrorRate(7)
	s.SetStreamErrorRate(math.NaN())
	s.SetTTFT(-time.Second)
	s.SetITL(-1)
	s.SetExtraLatency(-1)
	if s.faults.errRate() != 1 || s.faults.streamErrRate() != 0 ||
		s.faults.ttft.Load() != 0 || s.faults.itl.Load() != 0 || s.faults.extraLatency.Load() != 0 {
		t.Errorf("setters did not clamp: %+v", s.faultsSnapshot())
	}
}

func TestMetrics(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxConcurrent: 4})
	do(t, http.MethodPost, ts.URL+"/v1/chat/completions", chatBody(testModel, "hi", ""))
	do(t, http.MethodPost, ts.URL+"/v1/completions", textBody(testModel, "a b", `,"max_tokens":2,"stream":true`))
	status, hdr, body := do(t, http.MethodGet, ts.URL+"/metrics", "")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, Content-Type %q", status, hdr.Get("Content-Type"))
	}
	label := `model_name="` + testModel + `"`
	for _, want := range []string{
		`vllm:num_requests_running{` + label + `} 0`,
		`vllm:num_requests_waiting{` + label + `} 0`,
		`vllm:kv_cache_usage_perc{` + label + `} 0`,
		`vllm:time_to_first_token_seconds_count{` + label + `} 2`,
		`vllm:e2e_request_latency_seconds_count{` + label + `} 2`,
		`vllm:request_queue_time_seconds_count{` + label + `} 2`,
		`vllm:request_inference_time_seconds_count{` + label + `} 2`,
		`vllm:inter_token_latency_seconds_count{` + label + `} 16`, // 15 + 1
		`vllm:generation_tokens_total{` + label + `} 18`,
		`vllm:prompt_tokens_total{` + label + `} 3`,
		`vllm:request_success_total{finished_reason="stop",` + label + `} 1`,
		`vllm:request_success_total{finished_reason="length",` + label + `} 1`,
		`vllm:time_to_first_token_seconds_bucket{` + label + `,le="+Inf"} 2`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestAPIKey: with APIKey set the simulator guards /v1/* like vLLM's
// --api-key (401 {"error":"Unauthorized"}) and leaves /health and
// /metrics open.
func TestAPIKey(t *testing.T) {
	_, ts := newTestServer(t, Config{APIKey: "sekret"})
	chat := `{"model":"` + testModel + `","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	tests := []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{"models without key", http.MethodGet, "/v1/models", "", "", http.StatusUnauthorized},
		{"models with wrong key", http.MethodGet, "/v1/models", "Bearer nope", "", http.StatusUnauthorized},
		{"models without Bearer", http.MethodGet, "/v1/models", "sekret", "", http.StatusUnauthorized},
		{"models with key", http.MethodGet, "/v1/models", "Bearer sekret", "", http.StatusOK},
		{"chat without key", http.MethodPost, "/v1/chat/completions", "", chat, http.StatusUnauthorized},
		{"chat with key", http.MethodPost, "/v1/chat/completions", "Bearer sekret", chat, http.StatusOK},
		{"health open", http.MethodGet, "/health", "", "", http.StatusOK},
		{"metrics open", http.MethodGet, "/metrics", "", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if tt.want == http.StatusUnauthorized && string(b) != `{"error":"Unauthorized"}` {
				t.Errorf("body %s, want vLLM's {\"error\":\"Unauthorized\"}", b)
			}
		})
	}
}

// TestExpectContinue: like vLLM (uvicorn sends 100 Continue when the app
// first reads the body), the simulator answers "Expect: 100-continue"
// with 100 Continue before it reads a body, and refuses a request it
// will not read (no API key) at once, without waiting for the body. The
// gateway sends large bodies with Expect through http.Transport.
func TestExpectContinue(t *testing.T) {
	chat := `{"model":"` + testModel + `","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	tests := []struct {
		name         string
		cfg          Config
		wantContinue bool
		want         int
	}{
		{"body wanted", Config{}, true, http.StatusOK},
		{"refused before the body", Config{APIKey: "sekret"}, false, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ts := newTestServer(t, tt.cfg)
			c, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(chat))
			br := bufio.NewReader(c)
			// The body is not sent until an answer comes.
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to the head: %v", err)
			}
			if got := resp.StatusCode == http.StatusContinue; got != tt.wantContinue {
				t.Fatalf("first answer %d, want 100 Continue: %v", resp.StatusCode, tt.wantContinue)
			}
			if tt.wantContinue {
				io.WriteString(c, chat)
				if resp, err = http.ReadResponse(br, nil); err != nil {
					t.Fatalf("no answer after the body: %v", err)
				}
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
		})
	}
}
