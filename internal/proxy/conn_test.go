package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServerForwardsRequest: method, target, body reach the replica;
// hop-by-hop headers (and those the client's Connection names) do not;
// X-Forwarded-For is the client's address, whatever the client sent; Host
// is the replica's; the answer carries the pool and replica headers.
func TestServerForwardsRequest(t *testing.T) {
	backend := newEchoBackend(t)
	backendHost := strings.TrimPrefix(backend.URL, "http://")
	cases := []struct {
		name       string
		base       string // the replica URL's path
		method     string
		target     string
		header     []string
		body       string
		wantURI    string
		wantHeader http.Header
	}{
		{
			name:   "post with hop-by-hop headers",
			method: "POST", target: "/v1/chat/completions?stream=false&n=1",
			header: []string{
				"Content-Type: application/json",
				"Connection: keep-alive, X-Hop",
				"X-Hop: secret",
				"Keep-Alive: timeout=5",
				"Te: trailers",
				"Upgrade: websocket",
				"Proxy-Authorization: Basic c2VjcmV0",
				"Proxy-Connection: keep-alive",
				"X-Forwarded-For: 6.6.6.6",
				"Authorization: Bearer k",
				"X-Custom: a",
				"X-Custom: b",
			},
			body:    `{"model":"m","messages":[]}`,
			wantURI: "/v1/chat/completions?stream=false&n=1",
			wantHeader: http.Header{
				"Content-Type": {"application/json"},
				"X-Custom":     {"a", "b"},
			},
		},
		{
			name:   "escaped path and query",
			method: "POST", target: "/v1/a%2Fb/c%20d?q=x%26y&empty=",
			body: "{}", wantURI: "/v1/a%2Fb/c%20d?q=x%26y&empty=",
		},
		{
			name: "replica with a base path", base: "/base",
			method: "POST", target: "/v1/completions?x=1",
			body: "{}", wantURI: "/base/v1/completions?x=1",
		},
		{
			name:   "large body",
			method: "POST", target: "/v1/embeddings",
			body: strings.Repeat(`{"k":"0123456789abcdef"},`, 12000), wantURI: "/v1/embeddings",
		},
		{
			name:   "get without a body",
			method: "GET", target: "/v1/models",
			wantURI: "/v1/models",
		},
	}
	hop := []string{"Connection", "X-Hop", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "Proxy-Connection"}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				h := newHandler(t, Options{}, "", backend.URL+tc.base)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest(tc.method, tc.target, tc.header, tc.body))
				resp, body := readResp(t, br, tc.method)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %.300q", resp.StatusCode, body)
				}
				checkCutoverHeaders(t, resp.Header, backend.URL+tc.base)
				got := decodeEcho(t, body)
				if got.Method != tc.method || got.URI != tc.wantURI || got.Body != tc.body {
					t.Errorf("replica saw %s %s with a %d-byte body, want %s %s with %d bytes", got.Method, got.URI, len(got.Body), tc.method, tc.wantURI, len(tc.body))
				}
				if got.Host != backendHost {
					t.Errorf("replica saw Host %q, want %q", got.Host, backendHost)
				}
				if xff := got.Header["X-Forwarded-For"]; !slices.Equal(xff, []string{"127.0.0.1"}) {
					t.Errorf("replica saw X-Forwarded-For %q, want [127.0.0.1]", xff)
				}
				for _, k := range hop {
					if v, ok := got.Header[k]; ok {
						t.Errorf("hop-by-hop header %s reached the replica: %q", k, v)
					}
				}
				for k, want := range tc.wantHeader {
					if v := got.Header[k]; !slices.Equal(v, want) {
						t.Errorf("replica saw %s %q, want %q", k, v, want)
					}
				}
			})
		}
	}
}

// TestServerKeepAliveAndPipelining: requests written in one go on one
// connection are all answered, in order, the gateway's own answers
// included, and the connection stays usable (or closes when asked).
func TestServerKeepAliveAndPipelining(t *testing.T) {
	backend := newEchoBackend(t)
	post := func(path, body string, header ...string) step {
		return step{req: rawRequest("POST", path, header, body), method: "POST", status: 200, uri: path, body: body}
	}
	health := step{req: rawRequest("GET", "/health", nil, ""), method: "GET", status: 200}
	cases := []struct {
		name       string
		steps      []step
		wantClosed bool
	}{
		{name: "two posts", steps: []step{post("/v1/a", "first"), post("/v1/b", "second")}},
		{name: "gateway answers in between", steps: []step{
			post("/v1/a", "first"),
			health,
			{req: rawRequest("POST", "/nope", nil, "dropped body"), method: "POST", status: 404},
			{req: rawRequest("HEAD", "/health", nil, ""), method: "HEAD", status: 200},
			post("/v1/b", "second"),
		}},
		{
			// RFC 9112 section 2.2: a server SHOULD ignore at least one
			// empty line before a request-line; net/http does after a POST.
			name: "CRLF after a POST body",
			steps: []step{
				func() step { s := post("/v1/a", "first"); s.req += "\r\n"; return s }(),
				post("/v1/b", "second"),
			},
		},
		{name: "Connection: close", steps: []step{post("/v1/a", "first"), post("/v1/b", "second", "Connection: close")}, wantClosed: true},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				h := newHandler(t, Options{}, "", backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				var all strings.Builder
				for _, s := range tc.steps {
					all.WriteString(s.req)
				}
				writeRaw(t, c, all.String())
				var last *http.Response
				for _, s := range tc.steps {
					last = s.check(t, br, backend.URL)
				}
				if tc.wantClosed {
					if !last.Close {
						t.Error("the last answer does not say Connection: close")
					}
					expectClosed(t, c, br)
					return
				}
				writeRaw(t, c, health.req)
				health.check(t, br, "")
			})
		}
	}
}

// TestServerPipelinedRequestDuringSlowAnswer: a request that arrives while
// the connection watches for a hang-up (the first answer took longer than
// watchAfter) is kept, not taken for a hang-up, and answered second.
func TestServerPipelinedRequestDuringSlowAnswer(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			started := make(chan struct{}, 1)
			release := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/slow" {
					started <- struct{}{}
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
				}
				echoHandler(w, r)
			}))
			closeAtEnd(t, backend)
			unblock := sync.OnceFunc(func() { close(release) })
			t.Cleanup(unblock)
			h := newHandler(t, Options{}, "", backend.URL)
			c, br := dialRaw(t, fe.start(t, h))
			slow := step{req: rawRequest("POST", "/v1/slow", nil, "first"), method: "POST", status: 200, uri: "/v1/slow", body: "first"}
			fast := step{req: rawRequest("POST", "/v1/fast", nil, "second"), method: "POST", status: 200, uri: "/v1/fast", body: "second"}
			writeRaw(t, c, slow.req)
			select {
			case <-started:
			case <-time.After(testWait):
				t.Fatal("the slow request never reached the replica")
			}
			// The hang-up watcher starts on a timer nothing outside the
			// Server can observe: outwait it.
			time.Sleep(watchAfter + 200*time.Millisecond)
			writeRaw(t, c, fast.req)
			unblock()
			slow.check(t, br, backend.URL)
			fast.check(t, br, backend.URL)
		})
	}
}

// TestServerBadRequests: a malformed head gets 400, a head over
// MaxHeaderBytes 431, a body over MaxBodyBytes 413, each with an
// OpenAI-shaped JSON body, and the connection closes.
func TestServerBadRequests(t *testing.T) {
	backend := newEchoBackend(t)
	big := strings.Repeat("x", 4000)
	cases := []struct {
		name      string
		raw       string
		maxHeader int
		maxBody   int64
		status    int
		code      string
		pool      bool // the answer names the pool
	}{
		{name: "request line without spaces", raw: "GARBAGE\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "empty target", raw: "GET  HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "method not a token", raw: "G(T /v1/models HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "header line without a colon", raw: "GET /v1/models HTTP/1.1\r\nHost: g\r\nNoColon\r\n\r\n", status: 400, code: "bad_request"},
		{name: "space before the colon", raw: "GET /v1/models HTTP/1.1\r\nHost: g\r\nX-Bad : v\r\n\r\n", status: 400, code: "bad_request"},
		{name: "bad Content-Length", raw: "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 1x\r\n\r\n", status: 400, code: "bad_request"},
		{name: "conflicting Content-Lengths", raw: "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", status: 400, code: "bad_request"},
		{name: "bad escape in the path", raw: "GET /v1/%zz HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "bare CR in the target", raw: "GET /v1/models\rX-Injected:1 HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "NUL in the target", raw: "GET /v1/a\x00b HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "DEL in the target", raw: "GET /v1/a\x7fb HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "tab in the target", raw: "GET /v1/a\tb HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request"},
		{name: "control byte in a header value", raw: "GET /v1/models HTTP/1.1\r\nHost: g\r\nX-A: a\x01b\r\n\r\n", status: 400, code: "bad_request"},
		{name: "DEL in a header value", raw: "GET /v1/models HTTP/1.1\r\nHost: g\r\nX-A: a\x7fb\r\n\r\n", status: 400, code: "bad_request"},
		{name: "no Host", raw: "POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request"},
		{name: "two Hosts", raw: "POST /v1/completions HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request"},
		{name: "header over MaxHeaderBytes", maxHeader: 1024, raw: "GET /v1/models HTTP/1.1\r\nHost: g\r\nX-Big: " + big + "\r\n\r\n", status: 431, code: "request_header_too_large"},
		{name: "request line over MaxHeaderBytes", maxHeader: 1024, raw: "GET /v1/" + big + " HTTP/1.1\r\nHost: g\r\n\r\n", status: 431, code: "request_header_too_large"},
		{name: "declared body over MaxBodyBytes", maxBody: 1024, raw: "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 1000000\r\n\r\n", status: 413, code: "request_too_large", pool: true},
		{name: "body over MaxBodyBytes", maxBody: 1024, raw: rawRequest("POST", "/v1/chat/completions", nil, strings.Repeat("y", 64<<10)), status: 413, code: "request_too_large", pool: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, Options{MaxBodyBytes: tc.maxBody}, "", backend.URL)
			c, br := dialRaw(t, startLoopServer(t, &Server{Handler: h, MaxHeaderBytes: tc.maxHeader}))
			// The Server may answer and close before reading all of it.
			_, _ = io.WriteString(c, tc.raw)
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %q", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			checkAPIError(t, body, tc.code)
			if tc.pool {
				checkCutoverHeaders(t, resp.Header, "")
			}
			if !resp.Close {
				t.Error("the answer does not say Connection: close")
			}
			expectClosed(t, c, br)
		})
	}
}

// TestServerExpectContinue: a client that waits for 100 Continue gets it
// before sending its body, then the answer; a body over the limit is
// refused without it; a request the gateway answers itself is answered,
// with or without a 100 Continue first.
func TestServerExpectContinue(t *testing.T) {
	backend := newEchoBackend(t)
	cases := []struct {
		name         string
		path         string
		maxBody      int64
		wantContinue string // "yes", "no", "either"
		status       int
		code         string
	}{
		{name: "forwarded", path: "/v1/chat/completions", wantContinue: "yes", status: 200},
		{name: "body over the limit", path: "/v1/chat/completions", maxBody: 4, wantContinue: "no", status: 413, code: "request_too_large"},
		{name: "unknown path", path: "/v2/unknown", wantContinue: "either", status: 404, code: "unknown_path"},
		{name: "health", path: "/health", wantContinue: "either", status: 200},
	}
	const body = `{"a":1}`
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				h := newHandler(t, Options{MaxBodyBytes: tc.maxBody}, "", backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				method := "POST"
				if tc.path == "/health" {
					method = "GET"
				}
				writeRaw(t, c, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", method, tc.path, len(body)))
				resp, err := http.ReadResponse(br, &http.Request{Method: method})
				if err != nil {
					t.Fatalf("no answer while the client waits for 100 Continue: %v", err)
				}
				gotContinue := resp.StatusCode == http.StatusContinue
				if gotContinue {
					if resp.Proto != "HTTP/1.1" {
						t.Errorf("interim answer %s %s", resp.Proto, resp.Status)
					}
					writeRaw(t, c, body)
					if resp, err = http.ReadResponse(br, &http.Request{Method: method}); err != nil {
						t.Fatalf("no answer after the body: %v", err)
					}
				}
				switch {
				case tc.wantContinue == "yes" && !gotContinue:
					t.Errorf("answered %d without 100 Continue first", resp.StatusCode)
				case tc.wantContinue == "no" && gotContinue:
					t.Error("sent 100 Continue for a body it refuses")
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %q", resp.StatusCode, tc.status, b)
				}
				switch {
				case tc.code != "":
					checkAPIError(t, string(b), tc.code)
				case tc.path != "/health":
					got := decodeEcho(t, string(b))
					if got.Body != body {
						t.Errorf("replica saw body %q", got.Body)
					}
					if v, ok := got.Header["Expect"]; ok {
						t.Errorf("replica saw Expect %q, though the gateway answered the expectation and sends the whole body", v)
					}
				}
			})
		}
	}
}

// TestServerClientHangUp: a client that closes its connection while the
// replica works stops the replica's work (its request context ends), is
// observed as client_closed, and does not make the replica unhealthy.
func TestServerClientHangUp(t *testing.T) {
	cases := []struct {
		name      string
		midStream bool // the replica sent the head and an event first
	}{
		{"waiting for the head", false},
		{"mid-stream", true},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				started, cancelled := make(chan struct{}), make(chan struct{})
				backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					if tc.midStream {
						w.Header().Set("Content-Type", "text/event-stream")
						_, _ = io.WriteString(w, "data: one\n\n")
						w.(http.Flusher).Flush()
					}
					close(started)
					<-r.Context().Done()
					close(cancelled)
				}))
				closeAtEnd(t, backend)
				obs := make(obsChan, 4)
				h := newHandler(t, Options{Observer: obs}, "", backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"stream":true}`))
				select {
				case <-started:
				case <-time.After(testWait):
					t.Fatal("the request never reached the replica")
				}
				if tc.midStream {
					resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
					if err != nil {
						t.Fatal(err)
					}
					line, err := bufio.NewReader(resp.Body).ReadString('\n')
					if err != nil || line != "data: one\n" {
						t.Fatalf("first event: %q, %v", line, err)
					}
				}
				_ = c.Close()
				select {
				case <-cancelled:
				case <-time.After(testWait):
					t.Fatal("the replica's request context was not cancelled after the client hung up")
				}
				select {
				case o := <-obs:
					if o.Error != "client_closed" {
						t.Errorf("observed error %q, want client_closed", o.Error)
					}
				case <-time.After(testWait):
					t.Fatal("no observation")
				}
				if rep := h.Table().Live.Pool.Replicas[0]; !rep.Healthy() {
					t.Errorf("a client hang-up made the replica unhealthy: %+v", rep.Health())
				}
			})
		}
	}
}

// TestServerOversizeBodyAnswerArrives: a client still sending a body the
// gateway refused (413) gets the answer, not a connection reset: the
// connection lingers and drains before it closes. Go's client reports a
// reset during its body write as the request's error.
func TestServerOversizeBodyAnswerArrives(t *testing.T) {
	backend := newEchoBackend(t)
	addr := startLoopServer(t, &Server{Handler: newHandler(t, Options{MaxBodyBytes: 1 << 10}, "", backend.URL)})
	body := bytes.Repeat([]byte("a"), 4<<20)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i := range 20 {
		resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), `"request_too_large"`) {
			t.Fatalf("attempt %d: status %d, body %q, err %v; want 413 request_too_large", i, resp.StatusCode, b, err)
		}
	}
}

// TestServerAgreesWithNetHTTP: for the same requests, the loop and the
// Handler under net/http answer with the same status, body and
// X-Cutover-* headers (and the replica sees the same request).
func TestServerAgreesWithNetHTTP(t *testing.T) {
	backend := newEchoBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	cases := []struct {
		name     string
		model    string   // client-facing model name
		replicas []string // nil: the echo backend
		noTable  bool
		maxBody  int64
		method   string
		path     string
		body     string
		code     string // the gateway's own error code, "" for none
	}{
		{name: "proxied post", model: "llama", method: "POST", path: "/v1/chat/completions", body: `{"model":"llama","messages":[]}`},
		{name: "proxied post, model missing", model: "llama", method: "POST", path: "/v1/chat/completions?x=1", body: `{"messages":[]}`},
		{name: "unknown model", model: "llama", method: "POST", path: "/v1/chat/completions", body: `{"model":"gpt-4"}`, code: "model_not_found"},
		{name: "unknown path", model: "llama", method: "GET", path: "/v2/models", code: "unknown_path"},
		{name: "dot segment", model: "llama", method: "GET", path: "/v1/%2e%2e/admin", code: "unknown_path"},
		{name: "vLLM's tokenizer route", model: "llama", method: "POST", path: "/tokenize", body: `{"model":"llama","prompt":"hi"}`},
		{name: "vLLM's rerank v2", model: "llama", method: "POST", path: "/v2/rerank", body: `{"query":"q","documents":["a"]}`},
		{name: "vLLM's metrics stay the operator's", model: "llama", method: "GET", path: "/metrics", code: "unknown_path"},
		{name: "vLLM's sleep stays the operator's", method: "POST", path: "/sleep?level=1", code: "unknown_path"},
		{name: "ping", model: "llama", method: "POST", path: "/ping"},
		{name: "health", model: "llama", method: "GET", path: "/health"},
		{name: "health HEAD", model: "llama", method: "HEAD", path: "/health"},
		{name: "models list", model: "llama", method: "GET", path: "/v1/models"},
		{name: "models passed through", method: "GET", path: "/v1/models"},
		{name: "replica error status", method: "POST", path: "/v1/status/500", body: "{}"},
		{name: "body too large", maxBody: 8, method: "POST", path: "/v1/chat/completions", body: `{"model":"llama"}`, code: "request_too_large"},
		{name: "no table yet", noTable: true, method: "POST", path: "/v1/chat/completions", body: "{}", code: "not_ready"},
		{name: "no replica", replicas: []string{}, method: "POST", path: "/v1/chat/completions", body: "{}", code: "no_healthy_replica"},
		{name: "no replica, health", replicas: []string{}, method: "GET", path: "/health", code: "no_healthy_replica"},
		{name: "replica down", replicas: []string{dead}, method: "POST", path: "/v1/chat/completions", body: "{}", code: "upstream_unreachable"},
		{name: "retry after a refused connection", replicas: []string{dead, backend.URL}, method: "POST", path: "/v1/chat/completions", body: "{}"},
		{name: "retry after a 503", replicas: []string{backend.URL + "/v1/status/503", backend.URL}, method: "POST", path: "/v1/chat/completions", body: "{}"},
		{name: "502 with no other replica", replicas: []string{backend.URL + "/v1/status/502"}, method: "POST", path: "/v1/chat/completions", body: "{}"},
	}
	type answer struct {
		status int
		header http.Header
		body   string
	}
	do := func(t *testing.T, start func(*testing.T, *Handler) string, tc int) answer {
		c := cases[tc]
		replicas := c.replicas
		if replicas == nil {
			replicas = []string{backend.URL}
		}
		u := &Upstream{}
		t.Cleanup(u.CloseIdleConnections)
		h := New(Options{Transport: u, MaxBodyBytes: c.maxBody, Logger: quiet, Picker: firstHealthy{}})
		if !c.noTable {
			h.Apply(testTable(t, c.model, replicas...))
		}
		cl := &http.Client{Transport: &http.Transport{}, Timeout: testWait}
		t.Cleanup(cl.CloseIdleConnections)
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req, err := http.NewRequest(c.method, "http://"+start(t, h)+c.path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Header.Del("Date")
		return answer{resp.StatusCode, resp.Header, string(b)}
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loop := do(t, startLoop, i)
			std := do(t, startNetHTTP, i)
			if loop.status != std.status {
				t.Errorf("status: loop %d, net/http %d", loop.status, std.status)
			}
			if loop.body != std.body {
				t.Errorf("body:\nloop     %q\nnet/http %q", loop.body, std.body)
			}
			for _, k := range []string{"X-Cutover-Pool", "X-Cutover-Replica", "Content-Type", "Content-Length", "X-Accel-Buffering"} {
				if k == "Content-Length" && tc.method == "HEAD" {
					continue // net/http leaves it out of a HEAD answer with no body written; the loop says 0, as the GET would
				}
				if !slices.Equal(loop.header[k], std.header[k]) {
					t.Errorf("%s: loop %q, net/http %q", k, loop.header[k], std.header[k])
				}
			}
			if tc.code != "" {
				checkAPIError(t, loop.body, tc.code)
			}
		})
	}
}

// TestServerIdleDeadline: the wait for the next request keeps its
// deadline across requests that follow each other quickly (armIdle moves
// it only now and then), yet a connection left idle is still closed, and
// an answer that took longer than the idle timeout leaves the next wait
// a deadline of its own, not the one that passed meanwhile.
func TestServerIdleDeadline(t *testing.T) {
	const idle = 150 * time.Millisecond
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/slow" {
			time.Sleep(2 * idle) // the scenario: an answer slower than the idle timeout
		}
		echoHandler(w, r)
	}))
	closeAtEnd(t, backend)
	cases := []struct {
		name  string
		paths []string // requests sent one after the other on one connection
	}{
		{"idle after back-to-back requests", []string{"/v1/a", "/v1/b", "/v1/c"}},
		{"a request right after a slow answer", []string{"/v1/a", "/v1/slow", "/v1/b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", backend.URL)
			c, br := dialRaw(t, startLoopServer(t, &Server{Handler: h, IdleTimeout: idle}))
			for _, p := range tc.paths {
				s := step{req: rawRequest("POST", p, nil, "x"), method: "POST", status: 200, uri: p, body: "x"}
				writeRaw(t, c, s.req)
				s.check(t, br, backend.URL)
			}
			expectClosed(t, c, br)
		})
	}
}

// TestServerHangUpAfterQuickRequests: a replica connection that answered
// quick requests keeps the read deadline of its first look at the client
// from one request to the next (keepWatch), but never one that passed
// while it was idle: the next request still goes out, the look still
// comes, and a client that hangs up during a slow answer still stops the
// replica's work.
func TestServerHangUpAfterQuickRequests(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/wait" {
			echoHandler(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		close(started)
		<-r.Context().Done()
		close(cancelled)
	}))
	closeAtEnd(t, backend)
	h := newHandler(t, Options{}, "", backend.URL)
	c, br := dialRaw(t, startLoop(t, h))
	for i := range 5 {
		p := fmt.Sprintf("/v1/quick%d", i)
		s := step{req: rawRequest("POST", p, nil, "x"), method: "POST", status: 200, uri: p, body: "x"}
		writeRaw(t, c, s.req)
		s.check(t, br, backend.URL)
	}
	// The scenario: a pause longer than the look's delay, which the
	// deadline the quick requests kept does not outlast.
	time.Sleep(watchAfter + 100*time.Millisecond)
	writeRaw(t, c, rawRequest("POST", "/v1/wait", nil, "x"))
	select {
	case <-started:
	case <-time.After(testWait):
		t.Fatal("the request never reached the replica")
	}
	_ = c.Close()
	select {
	case <-cancelled:
	case <-time.After(testWait):
		t.Fatal("the replica's request was not cancelled after the client hung up")
	}
}

// TestKeepWatchNeverKeepsPassedDeadline: the watch deadline in force is
// kept for a look due at most watchAfter/4 later only while it has not
// passed. A kept deadline that passed ends the wait at once: a stream
// whose look came early (the previous wait kept a deadline a little
// before this one's look) then parked, timed out, looked and re-parked in
// a loop until the look's time came, up to watchAfter/4 of spinning per
// token, which made the idle-streams benchmark's gateway allocate and
// grow.
func TestKeepWatchNeverKeepsPassedDeadline(t *testing.T) {
	now := time.Now()
	d := now.Add(watchAfter / 8) // the look is due soon
	for _, tc := range []struct {
		name string
		rdl  time.Time
		keep bool
	}{
		{"none in force", time.Time{}, false},
		{"passed, close to d", now.Add(-time.Millisecond), false},
		{"passed just now", now, false},
		{"ahead, close to d", d.Add(-watchAfter / 16), true},
		{"at d", d, true},
		{"after d", d.Add(time.Millisecond), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := &upConn{rdl: tc.rdl}
			if got := pc.keepWatch(d, now); got != tc.keep {
				t.Errorf("keepWatch with the deadline %v from now, look due %v from now: %v, want %v",
					tc.rdl.Sub(now), d.Sub(now), got, tc.keep)
			}
		})
	}
}

// recordingMirror passes every body submitted to it on.
type recordingMirror struct{ bodies chan []byte }

func (m *recordingMirror) Want(string, int) bool { return true }
func (m *recordingMirror) Submit(x *Mirrored)    { m.bodies <- x.Body }

// TestServerModelNameRewritePooled: the loop builds each rewritten body
// (model_name) in storage it reuses for the next request: every replica
// gets its request's own rewritten body, and a body handed to the shadow
// mirror stays what it was when later requests reuse the storage.
func TestServerModelNameRewritePooled(t *testing.T) {
	backend := newEchoBackend(t)
	const n = 4
	m := &recordingMirror{bodies: make(chan []byte, n)}
	h := newHandler(t, Options{Mirror: m}, "llama", backend.URL)
	c, br := dialRaw(t, startLoop(t, h))
	var want []string
	for i := range n {
		// Bodies of different lengths, the longest first: a shorter one
		// leaves the rest of the storage as the last one wrote it.
		in := fmt.Sprintf(`{"model":"llama","messages":[{"role":"user","content":%q}]}`, strings.Repeat("x", 40-10*i))
		out := strings.Replace(in, `"llama"`, `"model-v1"`, 1)
		s := step{req: rawRequest("POST", "/v1/chat/completions", nil, in), method: "POST", status: 200, uri: "/v1/chat/completions", body: out}
		writeRaw(t, c, s.req)
		s.check(t, br, backend.URL)
		want = append(want, out)
	}
	var got [][]byte
	for range n {
		select {
		case b := <-m.bodies:
			got = append(got, b)
		case <-time.After(testWait):
			t.Fatalf("%d bodies mirrored, want %d", len(got), n)
		}
	}
	for i, b := range got {
		if string(b) != want[i] {
			t.Errorf("mirrored body %d = %s, want %s", i, b, want[i])
		}
	}
}
