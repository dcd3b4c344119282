package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// obsChan collects a Handler's observations.
type obsChan chan Observation

func (o obsChan) Observe(ob *Observation) { o <- *ob }

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

// send posts body to url with the header lines given as name, value
// pairs (empty values left out) and returns the answer, body read.
func send(t *testing.T, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}
