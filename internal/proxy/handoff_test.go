package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

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
		// Expect: tea alone gets 417 from the loop (TestHostileRequests).
		{"Expect with a token beside 100-continue", "POST /v1/a HTTP/1.1\r\nHost: g\r\nExpect: 100-continue, tea\r\nContent-Length: 1\r\n\r\nx", "expect"},
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

// TestSlowPathFollowsTheTable: the loop's verdict on a routing table is
// worked out once per table, and a switch to a table with https replicas
// (live, or a canary's) is seen by the next request, as is the switch
// back.
func TestSlowPathFollowsTheTable(t *testing.T) {
	plain := testTable(t, "", "http://127.0.0.1:1")
	tlsLive := testTable(t, "", "https://127.0.0.1:1")
	g := &pool.Pool{Name: "green", Model: "model-v2", Replicas: []*pool.Replica{pool.NewReplica(&url.URL{Scheme: "https", Host: "127.0.0.1:2"})}}
	canary := route.New(2, "blue", "", plain.Live.Pool, g)
	canary.Canary, canary.CanaryWeight = canary.Pools["green"], 10
	h := newHandler(t, Options{}, "", "http://127.0.0.1:1")
	sc := &srvConn{h: h}
	for i, tc := range []struct {
		t    *route.Table
		want string
	}{{plain, ""}, {plain, ""}, {tlsLive, "https_replicas"}, {plain, ""}, {canary, "https_replicas"}, {plain, ""}} {
		if got := sc.slowPath(tc.t); got != tc.want {
			t.Errorf("table %d: %q, want %q", i, got, tc.want)
		}
	}
}

// TestSlowPathFollowsTheGeneration: the cached verdict belongs to a
// generation (it depends on the pool header), so a reload that turns the
// header on or off is seen by the next request on the same table.
func TestSlowPathFollowsTheGeneration(t *testing.T) {
	plain := testTable(t, "", "http://127.0.0.1:1")
	g := &pool.Pool{Name: "green", Model: "model-v2", Replicas: []*pool.Replica{pool.NewReplica(&url.URL{Scheme: "https", Host: "127.0.0.1:2"})}}
	tbl := route.New(2, "blue", "", plain.Live.Pool, g) // no canary: green only by the header
	h := newHandler(t, Options{}, "", "http://127.0.0.1:1")
	h.Apply(tbl)
	for i, header := range []string{"", "X-Cutover-Pool", ""} {
		if err := h.Reconfigure(Options{PoolHeader: header, Logger: quiet}); err != nil {
			t.Fatal(err)
		}
		want := ""
		if header != "" {
			want = "https_replicas"
		}
		sc := &srvConn{h: h.current()}
		for j := range 2 { // the second from the cache
			if got := sc.slowPath(tbl); got != want {
				t.Errorf("generation %d (pool header %q), look %d: %q, want %q", i, header, j, got, want)
			}
		}
	}
}
