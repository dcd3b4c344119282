package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

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
