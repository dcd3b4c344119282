package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// testWait bounds every wait on a socket or channel in these tests. A
// passing test never gets near it.
const testWait = 10 * time.Second

// frontends are the two ways a Handler meets clients: the Server's own
// loop and net/http. A test run over both checks the behaviour and that
// the two agree.
var frontends = []struct {
	name  string
	start func(t *testing.T, h *Handler) string
}{
	{"loop", startLoop},
	{"net-http", startNetHTTP},
}

// startLoop serves h with a Server's own loop on 127.0.0.1.
func startLoop(t *testing.T, h *Handler) string {
	t.Helper()
	return startLoopServer(t, &Server{Handler: h})
}

func startNetHTTP(t *testing.T, h *Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	closeAtEnd(t, srv)
	return srv.Listener.Addr().String()
}

// startLoopServer runs s and fails the test if any connection went to
// the net/http fallback: tests using it mean the loop itself.
func startLoopServer(t *testing.T, s *Server) string {
	t.Helper()
	if s.ReadHeaderTimeout == 0 {
		// Bounds how long a test that fails by a stuck read of the
		// Server takes; no passing test comes near it.
		s.ReadHeaderTimeout = 2 * time.Second
	}
	addr := startServer(t, s)
	t.Cleanup(func() {
		if usedFallback(s) {
			t.Error("a connection went to the net/http fallback; the test meant the Server's own loop")
		}
	})
	return addr
}

// closeAtEnd closes srv when the test ends, cutting its connections
// first: a handler still blocked (in a failing test) must not hang the
// cleanup.
func closeAtEnd(t *testing.T, srv *httptest.Server) {
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
}

// startServer runs s on a new 127.0.0.1 listener until the test ends.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case err := <-served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		case <-time.After(testWait):
			t.Error("Serve did not return after Close")
		}
	})
	return ln.Addr().String()
}

func usedFallback(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fallback != nil
}

// quiet is the Handlers' logger: expected failures are not news.
var quiet = slog.New(slog.DiscardHandler)

// newHandler returns a Handler sending through an *Upstream (the loop's
// fast path) to a blue pool of the given replica base URLs.
func newHandler(t *testing.T, opts Options, modelName string, replicas ...string) *Handler {
	t.Helper()
	if opts.Transport == nil {
		u := &Upstream{}
		t.Cleanup(u.CloseIdleConnections)
		opts.Transport = u
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	h := New(opts)
	h.Apply(testTable(t, modelName, replicas...))
	return h
}

func testTable(t *testing.T, modelName string, replicas ...string) *route.Table {
	t.Helper()
	p := &pool.Pool{Name: "blue", Model: "model-v1"}
	for _, s := range replicas {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Replicas = append(p.Replicas, pool.NewReplica(u))
	}
	return route.New(1, "blue", modelName, p, &pool.Pool{Name: "green", Model: "model-v2"})
}

// echoed is what the echo backend saw of a request; it answers with it.
type echoed struct {
	Method string
	URI    string
	Host   string
	Header http.Header
	Body   string
}

// echoHandler answers every request with what it saw, as JSON. A path
// /v1/status/NNN... answers with status NNN (also as a replica's base
// path, before the request's own path).
func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if s, ok := strings.CutPrefix(r.URL.Path, "/v1/status/"); ok && len(s) >= 3 {
		status, _ = strconv.Atoi(s[:3])
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", "echo")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, Body: string(b)})
}

func newEchoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(echoHandler))
	closeAtEnd(t, srv)
	return srv
}

// rawBackend serves each connection to a new 127.0.0.1 listener with
// serve, for answers net/http would not write. It returns the base URL.
func rawBackend(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(testWait))
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// rawAnswers reads requests on a connection and answers each with the
// bytes of answer, closing the connection after the first answer when
// closeAfter.
func rawAnswers(answer string, closeAfter bool) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, answer); err != nil || closeAfter {
				return
			}
		}
	}
}

// dialRaw opens a client connection whose every read and write fails
// after testWait.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(testWait))
	return c, bufio.NewReader(c)
}

func writeRaw(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
}

// rawRequest builds an HTTP/1.1 request with a Host, the header lines
// given, and a Content-Length when there is a body.
func rawRequest(method, target string, header []string, body string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gateway.test\r\n")
	for _, h := range header {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// readResp reads one whole answer to a request of method.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %s: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of the answer to %s (status %d, read %q): %v", method, resp.StatusCode, b, err)
	}
	return resp, string(b)
}

// expectClosed fails unless the peer closed the connection: a read must
// end in EOF or a reset, not data and not a timeout.
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	b, err := br.ReadByte()
	switch {
	case err == nil:
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("connection still open: read %q", append([]byte{b}, rest...))
	case isTimeout(err):
		t.Fatalf("connection still open after %v", testWait)
	}
}

// checkAPIError checks an OpenAI-shaped error body with the given code.
func checkAPIError(t *testing.T, body, code string) {
	t.Helper()
	var v map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, body)
	}
	e, ok := v["error"]
	if !ok {
		t.Fatalf("error body has no error object: %q", body)
	}
	for _, k := range []string{"message", "type", "code"} {
		if s, ok := e[k].(string); !ok || s == "" {
			t.Errorf("error.%s = %v, want a non-empty string (body %q)", k, e[k], body)
		}
	}
	if e["code"] != code {
		t.Errorf("error.code = %v, want %q", e["code"], code)
	}
}

func checkCutoverHeaders(t *testing.T, h http.Header, replica string) {
	t.Helper()
	if got := h["X-Cutover-Pool"]; !slices.Equal(got, []string{"blue"}) {
		t.Errorf("X-Cutover-Pool = %q, want [blue]", got)
	}
	if replica == "" {
		return
	}
	if got := h["X-Cutover-Replica"]; !slices.Equal(got, []string{replica}) {
		t.Errorf("X-Cutover-Replica = %q, want [%s]", got, replica)
	}
}

func decodeEcho(t *testing.T, body string) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an echo of the backend: %v: %.200q", err, body)
	}
	return e
}

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

// TestServerResponseHeaders: the replica's end-to-end headers reach the
// client with their values; its hop-by-hop ones do not; its own
// X-Cutover-* headers are replaced by the gateway's.
func TestServerResponseHeaders(t *testing.T) {
	answer := "HTTP/1.1 201 Created\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: 2\r\n" +
		"Connection: keep-alive, X-Hop-Resp\r\n" +
		"X-Hop-Resp: secret\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Authenticate: Basic\r\n" +
		"Proxy-Authorization: Basic c2VjcmV0\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Upgrade: h2c\r\n" +
		"Trailer: X-Checksum\r\n" +
		"X-Cutover-Pool: replica-says\r\n" +
		"X-Cutover-Replica: replica-says\r\n" +
		"X-Request-Id: abc-123\r\n" +
		"Set-Cookie: a=1\r\n" +
		"Set-Cookie: b=2\r\n" +
		"Cache-Control: no-store\r\n" +
		"\r\n{}"
	backend := rawBackend(t, rawAnswers(answer, false))
	want := []struct {
		name string
		vals []string // nil: must be absent
	}{
		{"Content-Type", []string{"application/json"}},
		{"X-Request-Id", []string{"abc-123"}},
		{"Set-Cookie", []string{"a=1", "b=2"}},
		{"Cache-Control", []string{"no-store"}},
		{"X-Cutover-Pool", []string{"blue"}},
		{"X-Cutover-Replica", []string{backend}},
		{"Connection", nil},
		{"X-Hop-Resp", nil},
		{"Keep-Alive", nil},
		{"Proxy-Authenticate", nil},
		{"Proxy-Authorization", nil},
		{"Proxy-Connection", nil},
		{"Upgrade", nil},
		{"Trailer", nil},
	}
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", backend)
			c, br := dialRaw(t, fe.start(t, h))
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, "{}"))
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusCreated || body != "{}" {
				t.Fatalf("got %d %q, want 201 {}", resp.StatusCode, body)
			}
			for _, w := range want {
				t.Run(w.name, func(t *testing.T) {
					got, ok := resp.Header[w.name]
					switch {
					case w.vals == nil && ok:
						t.Errorf("relayed %q, want it dropped", got)
					case w.vals != nil && !slices.Equal(got, w.vals):
						t.Errorf("got %q, want %q", got, w.vals)
					}
				})
			}
		})
	}
}

// TestServerStreamsWithoutHolding: an SSE event the replica flushed
// reaches the client while the replica is still blocked (it waits until
// the test has read the event through the gateway), and the chunked body
// ends cleanly for a raw reader and for net/http's client.
func TestServerStreamsWithoutHolding(t *testing.T) {
	for _, fe := range frontends {
		for _, client := range []string{"raw", "http-client"} {
			t.Run(fe.name+"/"+client, func(t *testing.T) {
				backend, unblock := newGatedStream(t, nil)
				h := newHandler(t, Options{}, "", backend.URL)
				addr := fe.start(t, h)

				var resp *http.Response
				if client == "raw" {
					c, br := dialRaw(t, addr)
					writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", []string{"Content-Type: application/json"}, `{"stream":true}`))
					var err error
					if resp, err = http.ReadResponse(br, &http.Request{Method: "POST"}); err != nil {
						t.Fatal(err)
					}
				} else {
					cl := &http.Client{Transport: &http.Transport{}, Timeout: testWait}
					t.Cleanup(cl.CloseIdleConnections)
					var err error
					if resp, err = cl.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`)); err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				checkCutoverHeaders(t, resp.Header, backend.URL)
				if got := resp.Header.Get("X-Accel-Buffering"); got != "no" {
					t.Errorf("X-Accel-Buffering = %q, want no", got)
				}
				if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
					t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
				}
				ev := bufio.NewReader(resp.Body)
				var first strings.Builder
				for !strings.HasSuffix(first.String(), "\n\n") {
					line, err := ev.ReadString('\n')
					first.WriteString(line)
					if err != nil {
						t.Fatalf("first event not delivered while the replica waits: read %q: %v", first.String(), err)
					}
				}
				if first.String() != "data: one\n\n" {
					t.Fatalf("first event %q", first.String())
				}
				unblock()
				rest, err := io.ReadAll(ev)
				if err != nil {
					t.Fatalf("stream did not end cleanly: read %q: %v", rest, err)
				}
				if string(rest) != "data: two\n\ndata: [DONE]\n\n" {
					t.Errorf("rest of the stream %q", rest)
				}
			})
		}
	}
}

// step is one request on a connection and what its answer must be.
type step struct {
	req    string
	method string
	status int
	uri    string // an answer from the echo backend: the URI it saw; "" for the gateway's own answers
	body   string // the body the echo backend saw
}

func (s step) check(t *testing.T, br *bufio.Reader, replica string) *http.Response {
	t.Helper()
	resp, body := readResp(t, br, s.method)
	if resp.StatusCode != s.status {
		t.Fatalf("%s: status %d, want %d: %.300q", strings.SplitN(s.req, "\r\n", 2)[0], resp.StatusCode, s.status, body)
	}
	if s.uri != "" {
		checkCutoverHeaders(t, resp.Header, replica)
		if got := decodeEcho(t, body); got.Method != s.method || got.URI != s.uri || got.Body != s.body {
			t.Errorf("answer for %s %s %q instead of %s %s %q", got.Method, got.URI, got.Body, s.method, s.uri, s.body)
		}
	}
	return resp
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

// TestServerFallback: connections the loop does not serve itself
// (HTTP/1.0, a chunked request body, an absolute-form target, an https
// replica) are served by net/http with the same Handler.
func TestServerFallback(t *testing.T) {
	backend := newEchoBackend(t)
	tlsBackend := httptest.NewTLSServer(http.HandlerFunc(echoHandler))
	closeAtEnd(t, tlsBackend)
	chunked := "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	plain := step{req: rawRequest("POST", "/v1/completions", nil, "plain"), method: "POST", status: 200, uri: "/v1/completions", body: "plain"}
	cases := []struct {
		name       string
		tls        bool
		pipelined  bool // all requests in one write
		steps      []step
		wantClosed bool
	}{
		{
			name:       "HTTP/1.0",
			steps:      []step{{req: "POST /v1/chat/completions HTTP/1.0\r\nHost: gateway.test\r\nContent-Length: 5\r\n\r\nhello", method: "POST", status: 200, uri: "/v1/chat/completions", body: "hello"}},
			wantClosed: true,
		},
		{
			name:  "chunked request body, then another request",
			steps: []step{{req: chunked, method: "POST", status: 200, uri: "/v1/chat/completions", body: "hello world"}, plain},
		},
		{
			name:  "chunked request body after a request the loop served",
			steps: []step{plain, {req: chunked, method: "POST", status: 200, uri: "/v1/chat/completions", body: "hello world"}, plain},
		},
		{
			name:      "pipelined: loop, fallback, loop",
			pipelined: true,
			steps:     []step{plain, {req: chunked, method: "POST", status: 200, uri: "/v1/chat/completions", body: "hello world"}, plain},
		},
		{
			name:  "absolute-form target",
			steps: []step{{req: "GET http://gateway.test/v1/models?x=1 HTTP/1.1\r\nHost: gateway.test\r\n\r\n", method: "GET", status: 200, uri: "/v1/models?x=1"}},
		},
		{
			name:  "https replica",
			tls:   true,
			steps: []step{plain, plain},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			replica := backend.URL
			var h *Handler
			if tc.tls {
				replica = tlsBackend.URL
				h = newHandler(t, Options{Transport: &Upstream{Fallback: tlsBackend.Client().Transport}}, "", replica)
			} else {
				h = newHandler(t, Options{}, "", replica)
			}
			s := &Server{Handler: h}
			c, br := dialRaw(t, startServer(t, s))
			if tc.pipelined {
				var all strings.Builder
				for _, st := range tc.steps {
					all.WriteString(st.req)
				}
				writeRaw(t, c, all.String())
			}
			for _, st := range tc.steps {
				if !tc.pipelined {
					writeRaw(t, c, st.req)
				}
				st.check(t, br, replica)
			}
			if tc.wantClosed {
				expectClosed(t, c, br)
			}
			if !usedFallback(s) {
				t.Error("the net/http fallback was never used")
			}
		})
	}
}

// TestServerSharedUpstreamPool: a replica connection the loop returns to
// Upstream's idle pool carries no read deadline of its own exchange into
// the next user of the pool: the net/http fallback, or another net/http
// server on the same Handler (the gateway's preview listener).
// Regression: the loop's 500 ms watch deadline, left set, cut a slower
// answer on the reused connection with a 504.
func TestServerSharedUpstreamPool(t *testing.T) {
	// What the replica takes to answer /v1/slow: longer than watchAfter,
	// so a deadline left from the first exchange (at most watchAfter after
	// it) always falls inside the second.
	const slow = watchAfter + 100*time.Millisecond
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/slow" {
			time.Sleep(slow) // the replica's latency, not synchronisation
		}
		echoHandler(w, r)
	}))
	closeAtEnd(t, backend)
	cases := []struct {
		name string
		// second sends the slow request through net/http on the Handler
		// and returns its status.
		second func(t *testing.T, h *Handler, loopAddr string) int
	}{
		{"fallback", func(t *testing.T, h *Handler, loopAddr string) int {
			c, br := dialRaw(t, loopAddr)
			writeRaw(t, c, "POST /v1/slow HTTP/1.0\r\nHost: g\r\nContent-Length: 2\r\n\r\n{}")
			resp, _ := readResp(t, br, "POST")
			return resp.StatusCode
		}},
		{"another net/http server", func(t *testing.T, h *Handler, _ string) int {
			c, br := dialRaw(t, startNetHTTP(t, h))
			writeRaw(t, c, rawRequest("POST", "/v1/slow", nil, "{}"))
			resp, _ := readResp(t, br, "POST")
			return resp.StatusCode
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", backend.URL)
			s := &Server{Handler: h}
			addr := startServer(t, s)
			c, br := dialRaw(t, addr)
			first := step{req: rawRequest("POST", "/v1/fast", nil, "{}"), method: "POST", status: 200, uri: "/v1/fast", body: "{}"}
			writeRaw(t, c, first.req)
			first.check(t, br, backend.URL)
			if got := tc.second(t, h, addr); got != http.StatusOK {
				t.Errorf("a %v answer on the replica connection the loop pooled: status %d, want 200", slow, got)
			}
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

// TestServerBodilessAnswers: a HEAD answer, a 204 and a 304 carry no body
// (the gateway waits for none and relays none), and the connection serves
// the next request.
func TestServerBodilessAnswers(t *testing.T) {
	backend := newEchoBackend(t)
	// A replica answering HEAD with the head of a chunked answer, as the
	// GET would have been.
	chunkedHead := rawBackend(t, rawAnswers("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", false))
	cases := []struct {
		name    string
		replica string
		method  string
		path    string
		status  int
	}{
		{"HEAD", backend.URL, "HEAD", "/v1/models", 200},
		{"HEAD answered chunked", chunkedHead, "HEAD", "/v1/models", 200},
		{"204", backend.URL, "POST", "/v1/status/204", 204},
		{"304", backend.URL, "GET", "/v1/status/304", 304},
		{"HEAD of the gateway's own 404", backend.URL, "HEAD", "/nope", 404},
		{"HEAD health", backend.URL, "HEAD", "/health", 200},
	}
	next := step{req: rawRequest("POST", "/v1/next", nil, "next"), method: "POST", status: 200, uri: "/v1/next", body: "next"}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				// The first request goes to tc.replica, the next one to
				// the echo backend.
				var pick indexPicker
				h := newHandler(t, Options{Picker: &pick}, "", tc.replica, backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				body := ""
				if tc.method == "POST" {
					body = "{}"
				}
				writeRaw(t, c, rawRequest(tc.method, tc.path, nil, body))
				resp, got := readResp(t, br, tc.method)
				if resp.StatusCode != tc.status || got != "" {
					t.Fatalf("got %d with body %q, want %d without one", resp.StatusCode, got, tc.status)
				}
				checkCutoverHeaders(t, resp.Header, "")
				pick.i.Store(1)
				writeRaw(t, c, next.req)
				next.check(t, br, backend.URL)
			})
		}
	}
}

// firstHealthy picks the first healthy replica but skip: deterministic
// retries.
type firstHealthy struct{}

func (firstHealthy) Pick(rs []*pool.Replica, skip *pool.Replica) *pool.Replica {
	for _, r := range rs {
		if r != skip && r.Healthy() {
			return r
		}
	}
	return nil
}

// indexPicker picks the replica at index i, and no other.
type indexPicker struct{ i atomic.Int32 }

func (p *indexPicker) Pick(rs []*pool.Replica, skip *pool.Replica) *pool.Replica {
	i := int(p.i.Load())
	if i >= len(rs) || rs[i] == skip {
		return nil
	}
	return rs[i]
}

// TestServerCloseDelimitedAnswers: an answer that ends when the replica
// closes (no length, no chunking) reaches the client as a valid chunked
// body, and the client connection stays usable.
func TestServerCloseDelimitedAnswers(t *testing.T) {
	body := strings.Repeat("line of text\r\n", 8000)
	cases := []struct {
		name        string
		head        string
		wantChunked bool
	}{
		{"HTTP/1.1 without length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", true},
		{"HTTP/1.0 without length", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", true},
		{"event stream without length", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", true},
		{"length, then close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", false},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				replica := rawBackend(t, func(c net.Conn) {
					br := bufio.NewReader(c)
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, tc.head)
					for part := range slices.Chunk([]byte(body), 40000) { // a few writes
						if _, err := c.Write(part); err != nil {
							return
						}
					}
				})
				h := newHandler(t, Options{}, "", replica)
				c, br := dialRaw(t, fe.start(t, h))
				for i := range 2 {
					writeRaw(t, c, rawRequest("POST", "/v1/completions", nil, "{}"))
					resp, got := readResp(t, br, "POST")
					if resp.StatusCode != 200 || got != body {
						t.Fatalf("request %d: status %d, %d-byte body, want 200 and %d bytes", i, resp.StatusCode, len(got), len(body))
					}
					if chunked := slices.Equal(resp.TransferEncoding, []string{"chunked"}); chunked != tc.wantChunked {
						t.Errorf("request %d: Transfer-Encoding %q, want chunked %v", i, resp.TransferEncoding, tc.wantChunked)
					}
					if resp.Close {
						t.Errorf("request %d: the gateway closes the client connection", i)
					}
					checkCutoverHeaders(t, resp.Header, replica)
				}
			})
		}
	}
}

// TestServerConflictingReplicaFraming: a replica answer with both
// Transfer-Encoding: chunked and a Content-Length is framed by the
// chunking, and reaches the client without the Content-Length (RFC 9112
// section 6.3: an intermediary must remove it before forwarding), as
// net/http's client does.
func TestServerConflictingReplicaFraming(t *testing.T) {
	replica := rawBackend(t, rawAnswers("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false))
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", replica)
			c, br := dialRaw(t, fe.start(t, h))
			for i := range 2 {
				writeRaw(t, c, rawRequest("POST", "/v1/completions", nil, "{}"))
				head := peekHead(t, br)
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != 200 || body != "hello" {
					t.Fatalf("request %d: %d %q, want 200 hello", i, resp.StatusCode, body)
				}
				if te, cl := hasField(head, "Transfer-Encoding"), hasField(head, "Content-Length"); te && cl {
					t.Errorf("request %d: the answer carries both Transfer-Encoding and Content-Length:\n%s", i, head)
				}
			}
		})
	}
}

// peekHead returns the raw head of the next answer without consuming it.
func peekHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if err != nil {
			t.Fatalf("reading an answer's head: %v (read %q)", err, b)
		}
		if bytes.HasSuffix(b, []byte("\r\n\r\n")) {
			return string(b)
		}
	}
}

// hasField reports a header field named name in a raw head.
func hasField(head, name string) bool {
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// TestServerTimeouts: a keep-alive connection idle past IdleTimeout is
// closed; a head that stops arriving is given up after ReadHeaderTimeout,
// a body after the Handler's BodyTimeout (with a 408, as the Handler does).
func TestServerTimeouts(t *testing.T) {
	backend := newEchoBackend(t)
	cases := []struct {
		name   string
		send   string // after one complete request
		status int    // 0: closed without an answer
		code   string
	}{
		{name: "idle keep-alive connection"},
		{name: "partial head", send: "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\n"},
		{name: "partial body", send: "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\n{\"a\"", status: 408, code: "request_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, Options{BodyTimeout: 200 * time.Millisecond}, "", backend.URL)
			s := &Server{Handler: h, IdleTimeout: 200 * time.Millisecond, ReadHeaderTimeout: 200 * time.Millisecond}
			c, br := dialRaw(t, startLoopServer(t, s))
			first := step{req: rawRequest("POST", "/v1/a", nil, "first"), method: "POST", status: 200, uri: "/v1/a", body: "first"}
			writeRaw(t, c, first.req)
			first.check(t, br, backend.URL)
			if tc.send != "" {
				writeRaw(t, c, tc.send)
			}
			if tc.status != 0 {
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %q", resp.StatusCode, tc.status, body)
				}
				checkAPIError(t, body, tc.code)
			}
			expectClosed(t, c, br)
		})
	}
}

// TestServerUpstreamBreaksMidAnswer: when the replica breaks after the
// head went out, the client's body ends in an error, never cleanly, and
// the connection is closed.
func TestServerUpstreamBreaksMidAnswer(t *testing.T) {
	cases := []struct {
		name       string
		answer     string
		wantPrefix string
	}{
		{"chunked, cut after a chunk", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nc\r\ndata: part\n\n\r\n", "data: part\n\n"},
		{"length, cut short", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":", `{"partial":`},
		{"malformed chunk size", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n", ""},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				replica := rawBackend(t, rawAnswers(tc.answer, true))
				h := newHandler(t, Options{}, "", replica)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, "{}"))
				resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
				if err != nil {
					// net/http drops a head still in its buffer when the
					// handler aborts: the client sees a cut connection.
					if fe.name == "loop" {
						t.Fatalf("no head relayed: %v", err)
					}
					return
				}
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				got, err := io.ReadAll(resp.Body)
				if err == nil {
					t.Fatalf("a broken answer ended cleanly: %q", got)
				}
				if !strings.HasPrefix(string(got), tc.wantPrefix) {
					t.Errorf("client got %q before the break, want %q", got, tc.wantPrefix)
				}
				expectClosed(t, c, br)
			})
		}
	}
}

// obsChan collects a Handler's observations.
type obsChan chan Observation

func (o obsChan) Observe(ob *Observation) { o <- *ob }

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

// TestServerShutdown: Shutdown closes idle keep-alive connections (the
// loop's and the fallback's) at once, returns only after the stream in
// flight finished, and that stream completes intact.
func TestServerShutdown(t *testing.T) {
	chunkedReq := "POST /v1/stream HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	cases := []struct {
		name      string
		streamReq string
	}{
		{"stream on the loop", rawRequest("POST", "/v1/stream", nil, "{}")},
		{"stream on the fallback", chunkedReq},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend, unblock := newGatedStream(t, echoHandler)
			h := newHandler(t, Options{}, "", backend.URL)
			s := &Server{Handler: h}
			addr := startServer(t, s)

			// The stream in flight.
			sc, sbr := dialRaw(t, addr)
			writeRaw(t, sc, tc.streamReq)
			resp, err := http.ReadResponse(sbr, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatal(err)
			}
			ev := bufio.NewReader(resp.Body)
			if line, err := ev.ReadString('\n'); err != nil || line != "data: one\n" {
				t.Fatalf("first event: %q, %v", line, err)
			}
			// Idle keep-alive connections, one on the loop and one handed
			// to the fallback.
			ic, ibr := dialRaw(t, addr)
			writeRaw(t, ic, rawRequest("GET", "/health", nil, ""))
			if resp, _ := readResp(t, ibr, "GET"); resp.StatusCode != 200 {
				t.Fatalf("health: %d", resp.StatusCode)
			}
			fc, fbr := dialRaw(t, addr)
			writeRaw(t, fc, strings.Replace(chunkedReq, "/v1/stream", "/v1/echo", 1))
			if resp, _ := readResp(t, fbr, "POST"); resp.StatusCode != 200 {
				t.Fatalf("fallback request: %d", resp.StatusCode)
			}

			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			expectClosed(t, ic, ibr)
			expectClosed(t, fc, fbr)
			// Shutdown must not return while the stream runs. An absence
			// can only be watched for a while: 100 ms is 20 of its 5 ms
			// rounds.
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned (%v) with a stream in flight", err)
			case <-time.After(100 * time.Millisecond):
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Error("a new connection was accepted during Shutdown")
			}
			unblock()
			rest, err := io.ReadAll(ev)
			if err != nil || string(rest) != "\ndata: two\n\ndata: [DONE]\n\n" {
				t.Errorf("stream after Shutdown began: %q, %v", rest, err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			case <-time.After(testWait):
				t.Fatal("Shutdown did not return after the stream ended")
			}
			expectClosed(t, sc, sbr)
		})
	}
}

// TestChunkParser feeds valid chunked bodies split at every point (and a
// byte at a time): the data comes out whole, every byte up to the end is
// consumed and none after it, and done is set exactly at the end.
func TestChunkParser(t *testing.T) {
	valid := []struct {
		name, in, data string
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"empty body", "0\r\n\r\n", ""},
		{"several chunks", "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n", "hello world"},
		{"extensions", "5;name=value\r\nhello\r\n6;a;b=\"q;x\"\r\n world\r\n0;last\r\n\r\n", "hello world"},
		{"whitespace before an extension", "5 ;x\r\nhello\r\n0\r\n\r\n", "hello"},
		{"trailers", "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: two\r\n\r\n", "abc"},
		{"bare LF", "3\nabc\n0\n\n", "abc"},
		{"bare LF with trailer", "3\nabc\n0\nX-T: 1\n\n", "abc"},
		{"upper-case hex and leading zeros", "000A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"data holding CRLF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
		{"SSE events", "b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n", "data: one\n\ndata: two\n\n"},
	}
	const next = "HTTP/1.1 200 OK\r\n" // the replica's next answer: not the body's
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.in); i++ {
				var p chunkParser
				var got []byte
				data := func(b []byte) { got = append(got, b...) }
				n, err := p.feed([]byte(tc.in[:i]), data)
				if err != nil || n != i {
					t.Fatalf("split at %d: first part consumed %d of %d: %v", i, n, i, err)
				}
				if p.done != (i == len(tc.in)) {
					t.Fatalf("split at %d: done = %v after %d of %d bytes", i, p.done, i, len(tc.in))
				}
				n, err = p.feed([]byte(tc.in[i:]+next), data)
				if err != nil || n != len(tc.in)-i || !p.done {
					t.Fatalf("split at %d: second part consumed %d, want %d, done %v: %v", i, n, len(tc.in)-i, p.done, err)
				}
				if string(got) != tc.data {
					t.Fatalf("split at %d: data %q, want %q", i, got, tc.data)
				}
			}
			var p chunkParser
			var got []byte
			for i := 0; i < len(tc.in); i++ {
				if p.done {
					t.Fatalf("byte by byte: done after %d of %d bytes", i, len(tc.in))
				}
				if n, err := p.feed([]byte{tc.in[i]}, func(b []byte) { got = append(got, b...) }); err != nil || n != 1 {
					t.Fatalf("byte by byte: byte %d: consumed %d: %v", i, n, err)
				}
			}
			if !p.done || string(got) != tc.data {
				t.Fatalf("byte by byte: done %v, data %q", p.done, got)
			}
		})
	}

	invalid := []struct {
		name, in string
	}{
		{"not hex", "zz\r\nbad\r\n0\r\n\r\n"},
		{"negative size", "-5\r\nhello\r\n0\r\n\r\n"},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"missing size", "\r\nhello\r\n0\r\n\r\n"},
		{"extension without a size", ";x\r\nhello\r\n0\r\n\r\n"},
		{"bare LF without a size", "\nhello\r\n0\r\n\r\n"},
		{"data longer than its size", "5\r\nhello!\r\n0\r\n\r\n"},
		{"CR then garbage after data", "5\r\nhello\rX\n0\r\n\r\n"},
		{"size too large", "10000000000000000\r\n"},
		{"extension too long", "1;" + strings.Repeat("e", maxChunkLine+1) + "\r\na\r\n0\r\n\r\n"},
		{"trailer line too long", "1\r\na\r\n0\r\nX-T: " + strings.Repeat("t", maxChunkLine+1) + "\r\n\r\n"},
	}
	for _, tc := range invalid {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			for _, i := range splitPoints(len(tc.in)) {
				var p chunkParser
				nop := func([]byte) {}
				_, err := p.feed([]byte(tc.in[:i]), nop)
				if err == nil {
					_, err = p.feed([]byte(tc.in[i:]), nop)
				}
				if err == nil {
					t.Fatalf("split at %d: no error (done %v)", i, p.done)
				}
			}
		})
	}
}

// splitPoints is every split of an n-byte input, or for a long one (the
// line-length limits) the splits around its ends and middle.
func splitPoints(n int) []int {
	if n <= 256 {
		pts := make([]int, n+1)
		for i := range pts {
			pts[i] = i
		}
		return pts
	}
	return []int{0, 1, 2, 3, n / 2, n - 3, n - 2, n - 1, n}
}

// FuzzChunkParser: feeding a body whole or a byte at a time gives the
// same verdict, the same data and the same end.
func FuzzChunkParser(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "3\nabc\n0\nX: y\n\n", "5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\nHTTP/1.1", "zz\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var whole chunkParser
		var wd []byte
		wn, werr := whole.feed(in, func(b []byte) { wd = append(wd, b...) })
		var bytewise chunkParser
		var bd []byte
		bn := 0
		var berr error
		for i := 0; i < len(in) && !bytewise.done; i++ {
			n, err := bytewise.feed(in[i:i+1], func(b []byte) { bd = append(bd, b...) })
			if err != nil {
				berr = err
				break
			}
			bn += n
		}
		if (werr == nil) != (berr == nil) {
			t.Fatalf("whole: %v; byte by byte: %v", werr, berr)
		}
		if werr != nil {
			return
		}
		if wn != bn || whole.done != bytewise.done || !bytes.Equal(wd, bd) {
			t.Fatalf("whole: %d bytes, done %v, data %q; byte by byte: %d, %v, %q", wn, whole.done, wd, bn, bytewise.done, bd)
		}
		if wn > len(in) || (!whole.done && wn != len(in)) {
			t.Fatalf("consumed %d of %d bytes, done %v", wn, len(in), whole.done)
		}
	})
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

// newGatedStream starts a backend that streams "data: one", then holds the
// rest of the stream until unblock is called (or the client leaves). With
// other set, only /v1/stream streams and other answers the rest.
func newGatedStream(t *testing.T, other http.HandlerFunc) (backend *httptest.Server, unblock func()) {
	t.Helper()
	release := make(chan struct{})
	backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if other != nil && r.URL.Path != "/v1/stream" {
			other(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\ndata: [DONE]\n\n")
	}))
	closeAtEnd(t, backend)
	unblock = sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // if the test fails first
	return backend, unblock
}

// TestServerFallbackReasons: each hand-off to net/http is reported once,
// with why, and the fast path reports nothing.
func TestServerFallbackReasons(t *testing.T) {
	backend := newEchoBackend(t)
	cases := []struct {
		name, req, reason string
	}{
		{"fast path", rawRequest("POST", "/v1/a", nil, "x"), ""},
		{"HTTP/1.0", "POST /v1/a HTTP/1.0\r\nHost: g\r\nContent-Length: 1\r\n\r\nx", "http_version"},
		{"chunked body", "POST /v1/a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "chunked_body"},
		{"absolute-form target", "POST http://g/v1/a HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\nx", "target_form"},
		{"Expect other than 100-continue", "POST /v1/a HTTP/1.1\r\nHost: g\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx", "expect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reasons := make(chan string, 4)
			s := &Server{Handler: newHandler(t, Options{}, "", backend.URL), OnFallback: func(r string) { reasons <- r }}
			c, br := dialRaw(t, startServer(t, s))
			writeRaw(t, c, tc.req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			select {
			case got := <-reasons:
				if got != tc.reason {
					t.Errorf("reason %q, want %q", got, tc.reason)
				}
			default:
				if tc.reason != "" {
					t.Errorf("no fallback reported, want %q", tc.reason)
				}
			}
			if len(reasons) > 0 {
				t.Errorf("more than one fallback reported: %q", <-reasons)
			}
		})
	}
	t.Run("https replicas", func(t *testing.T) {
		reasons := make(chan string, 1)
		tls := httptest.NewTLSServer(http.HandlerFunc(echoHandler))
		closeAtEnd(t, tls)
		h := newHandler(t, Options{Transport: &Upstream{Fallback: tls.Client().Transport}}, "", tls.URL)
		s := &Server{Handler: h, OnFallback: func(r string) { reasons <- r }}
		c, br := dialRaw(t, startServer(t, s))
		writeRaw(t, c, rawRequest("POST", "/v1/a", nil, "x"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d through the fallback to an https replica", resp.StatusCode)
		}
		if got := <-reasons; got != "https_replicas" {
			t.Errorf("reason %q, want https_replicas", got)
		}
	})
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

// TestServerFallbackDuringShutdown: a request that was arriving when
// Shutdown began and needs the net/http path is still served (by a
// fallback server created after Shutdown began), and Shutdown waits for
// its stream to finish, as for the loop's own connections.
func TestServerFallbackDuringShutdown(t *testing.T) {
	backend, unblock := newGatedStream(t, echoHandler)
	s := &Server{Handler: newHandler(t, Options{}, "", backend.URL)}
	c, br := dialRaw(t, startServer(t, s))
	writeRaw(t, c, "POST /v1/stream HTTP/1.") // the loop is reading this line
	active := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for sc := range s.conns {
			if sc.state.Load() == stateActive {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(testWait); !active(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the connection never became active")
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	for deadline := time.Now().Add(testWait); !s.shutdown.Load(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not start")
		}
	}
	writeRaw(t, c, "0\r\nHost: g\r\nContent-Length: 2\r\n\r\n{}") // HTTP/1.0: the net/http path
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("data: one\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: one\n\n" {
		rest, _ := io.ReadAll(resp.Body)
		t.Fatalf("first event %q%s, %v", first, rest, err)
	}
	select { // an absence can only be checked over time
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a stream still open on the net/http path", err)
	case <-time.After(100 * time.Millisecond):
	}
	unblock()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(rest), "data: [DONE]") {
		t.Errorf("rest of the stream %q, %v", rest, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(testWait):
		t.Error("Shutdown did not return after the stream ended")
	}
}
