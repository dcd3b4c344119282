package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests for the resources a hostile or broken client can hold: memory for
// declared bodies, connections kept by slow heads and bodies, answers
// nobody reads, and requests sent while the gateway drains. Each runs
// over every serving path.

// servingPaths are the ways a Handler meets clients: the loop, net/http
// as the Server runs it for proxy.client net/http (opts.Transport is an
// http.Transport), and net/http on its own (the preview listener).
var servingPaths = []struct {
	name    string
	netHTTP bool // the Handler sends through an http.Transport
	start   func(t *testing.T, h *Handler) string
}{
	{"loop", false, startLoop},
	{"server-net-http", true, func(t *testing.T, h *Handler) string { return startServer(t, &Server{Handler: h}) }},
	{"net-http", false, startNetHTTP},
}

// countingBackend is an echo backend that counts the requests it got.
func countingBackend(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		echoHandler(w, r)
	}))
	closeAtEnd(t, srv)
	return srv, &n
}

// newPathHandler is newHandler for one of servingPaths.
func newPathHandler(t *testing.T, netHTTP bool, opts Options, replicas ...string) *Handler {
	t.Helper()
	if netHTTP {
		tr := NewTransport(0, 0)
		t.Cleanup(tr.CloseIdleConnections)
		opts.Transport = tr
	}
	return newHandler(t, opts, "", replicas...)
}

// TestDeclaredBodyIsNotAllocated: a head declaring a 32 MiB body followed
// by one byte, on many connections, holds 4 KiB per connection, not
// 32 MiB (a regression: the declared length was allocated at once, and
// 100 such connections of 90 bytes each took gigabytes).
func TestDeclaredBodyIsNotAllocated(t *testing.T) {
	const conns = 20
	for _, sp := range servingPaths {
		t.Run(sp.name, func(t *testing.T) {
			backend, got := countingBackend(t)
			h := newPathHandler(t, sp.netHTTP, Options{}, backend.URL)
			addr := sp.start(t, h)
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range conns {
				c, _ := dialRaw(t, addr)
				writeRaw(t, c, "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 33554432\r\n\r\n{")
			}
			await(t, "every connection reading its body", func() bool { return h.buffered.used.Load() >= conns*firstChunk })
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if used := h.buffered.used.Load(); used > conns*firstChunk {
				t.Errorf("%d bytes held for %d one-byte bodies, want at most %d", used, conns, conns*firstChunk)
			}
			// Generous: a declared length allocated up front is 32 MiB a
			// connection.
			if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > conns*(4<<20) {
				t.Errorf("the heap grew by %d MiB for %d one-byte bodies", grew>>20, conns)
			}
			if n := got.Load(); n != 0 {
				t.Errorf("the replica got %d requests whose bodies never came", n)
			}
		})
	}
}

// TestBufferedBytesCap: once the request bytes held in memory reach
// MaxBufferedBytes, a request with a body is answered 503 overloaded with
// a Retry-After, and served again once the memory is free.
func TestBufferedBytesCap(t *testing.T) {
	for _, sp := range servingPaths {
		t.Run(sp.name, func(t *testing.T) {
			backend := newEchoBackend(t)
			h := newPathHandler(t, sp.netHTTP, Options{MaxBufferedBytes: 200 << 10}, backend.URL)
			addr := sp.start(t, h)
			// A slow body holds 188 KiB of chunks (4 to 64 KiB).
			slow, _ := dialRaw(t, addr)
			writeRaw(t, slow, "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("a", 150<<10))
			await(t, "the slow body held", func() bool { return h.buffered.used.Load() >= 150<<10 })

			body := strings.Repeat("b", 100<<10)
			c, br := dialRaw(t, addr)
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, body))
			resp, got := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
				t.Fatalf("status %d, Retry-After %q, want 503 and 1: %.200q", resp.StatusCode, resp.Header.Get("Retry-After"), got)
			}
			checkAPIError(t, got, "overloaded")

			_ = slow.Close()
			await(t, "the slow body's memory given back", func() bool { return h.buffered.used.Load() == 0 })
			c, br = dialRaw(t, addr)
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, body))
			if resp, got := readResp(t, br, "POST"); resp.StatusCode != http.StatusOK || decodeEcho(t, got).Body != body {
				t.Fatalf("after the memory was freed: status %d", resp.StatusCode)
			}
			await(t, "the memory given back", func() bool { return h.buffered.used.Load() == 0 })
		})
	}
}

// TestChunkedBodyAllocation: a body of unknown length costs its size and
// the chunks it arrived in, not the repeated doubling of io.ReadAll (10
// chunked bodies of 30 MiB took 733 MiB).
func TestChunkedBodyAllocation(t *testing.T) {
	h := New(Options{Logger: quiet})
	const size = 8 << 20
	src := strings.Repeat("x", size)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	body, held, aerr := h.bufferBody(io.MultiReader(strings.NewReader(src)), -1, nil)
	runtime.ReadMemStats(&after)
	if aerr != nil || string(body) != src || held != size {
		t.Fatalf("got %d bytes (held %d), %v", len(body), held, aerr)
	}
	h.buffered.give(held)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 5*size/2 {
		t.Errorf("reading %d MiB allocated %d MiB", size>>20, alloc>>20)
	}
	if used := h.buffered.used.Load(); used != 0 {
		t.Errorf("%d bytes still counted", used)
	}
}

// TestClientWriteTimeout: a client that stops reading a stream is cut
// after ClientWriteTimeout, the replica's request is cancelled (its
// connection freed), and the observation says client_write_timeout (a
// regression: such a client held the stream and the replica's generation
// until it hung up).
func TestClientWriteTimeout(t *testing.T) {
	for _, sp := range servingPaths {
		t.Run(sp.name, func(t *testing.T) {
			ended := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(ended)
				w.Header().Set("Content-Type", "text/event-stream")
				chunk := []byte("data: " + strings.Repeat("x", 16<<10) + "\n\n")
				for range 100_000 { // far more than any socket buffers
					if _, err := w.Write(chunk); err != nil {
						return
					}
					if err := http.NewResponseController(w).Flush(); err != nil {
						return
					}
					if r.Context().Err() != nil {
						return
					}
				}
			}))
			closeAtEnd(t, backend)
			obs := make(obsChan, 4)
			h := newPathHandler(t, sp.netHTTP, Options{ClientWriteTimeout: 200 * time.Millisecond, Observer: obs}, backend.URL)
			c, _ := dialRaw(t, sp.start(t, h))
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4 << 10)
			}
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"stream":true}`))
			select { // never reading
			case <-ended:
			case <-time.After(testWait):
				t.Fatal("the replica's request still runs while the client reads nothing")
			}
			select {
			case o := <-obs:
				if o.Error != clientWriteTimeout {
					t.Errorf("observed error %q, want %s", o.Error, clientWriteTimeout)
				}
			case <-time.After(testWait):
				t.Fatal("no observation")
			}
		})
	}
}

// recordingListener records the read deadlines set on its connections.
type recordingListener struct {
	net.Listener
	mu        sync.Mutex
	deadlines []time.Time
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (l *recordingListener) recorded() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.deadlines...)
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (c *recordingConn) SetReadDeadline(t time.Time) error {
	c.l.mu.Lock()
	c.l.deadlines = append(c.l.deadlines, t)
	c.l.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// TestHandOffKeepsHeadDeadline: a head handed to net/http keeps
// the deadline the loop set when it began (a regression: net/http started
// its own, so a head could take almost twice ReadHeaderTimeout).
func TestHandOffKeepsHeadDeadline(t *testing.T) {
	backend := newEchoBackend(t)
	h := newHandler(t, Options{}, "", backend.URL)
	s := &Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: ln}
	go func() { _ = s.Serve(rl) }()
	t.Cleanup(func() { _ = s.Close() })
	c, br := dialRaw(t, ln.Addr().String())
	writeRaw(t, c, "POST /v1/chat/completions HTTP/1.1\r\n")
	// The idle wait's deadline, then the head's.
	await(t, "the head deadline", func() bool { return len(rl.recorded()) >= 2 })
	head := rl.recorded()[1]
	writeRaw(t, c, "Host: g\r\nTransfer-Encoding: chunked\r\n\r\n")
	// The loop clears its deadline at the hand-off; net/http sets one.
	await(t, "net/http's head deadline", func() bool { return len(rl.recorded()) >= 4 })
	if got := rl.recorded()[3]; !got.Equal(head) {
		t.Fatalf("net/http reads the head until %v, %v after the loop's deadline", got, got.Sub(head))
	}
	writeRaw(t, c, "2\r\n{}\r\n0\r\n\r\n")
	if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || decodeEcho(t, body).Body != "{}" {
		t.Fatalf("status %d: %q", resp.StatusCode, body)
	}
}

// TestTrickledChunkedBodyIsCut: a chunked body trickled a byte at a time
// is cut by the body deadline on net/http too (a regression: it stayed
// open as long as bytes kept coming).
func TestTrickledChunkedBodyIsCut(t *testing.T) {
	paths := slices.Clone(servingPaths)
	paths[0].name, paths[0].start = "handed over", func(t *testing.T, h *Handler) string { return startServer(t, &Server{Handler: h}) }
	for _, sp := range paths {
		t.Run(sp.name, func(t *testing.T) {
			backend, got := countingBackend(t)
			h := newPathHandler(t, sp.netHTTP, Options{BodyTimeout: 300 * time.Millisecond}, backend.URL)
			c, br := dialRaw(t, sp.start(t, h))
			writeRaw(t, c, "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n")
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for range 200 { // 10 s at most
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			})
			defer func() { close(stop); wg.Wait() }()
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408: %q", resp.StatusCode, body)
			}
			checkAPIError(t, body, "request_timeout")
			expectClosed(t, c, br)
			if n := got.Load(); n != 0 {
				t.Errorf("the replica got %d requests whose bodies never came", n)
			}
		})
	}
}

// TestNetHTTPClientServedFromStart: with proxy.client net/http the net/http
// server exists from Serve on and takes every connection as accepted,
// before a byte of it arrived (a regression: the loop read and parsed the
// first request of every connection before handing it over).
func TestNetHTTPClientServedFromStart(t *testing.T) {
	backend := newEchoBackend(t)
	h := newPathHandler(t, true, Options{}, backend.URL)
	handed := make(chan string, 4)
	s := &Server{Handler: h, OnFallback: func(reason string) { handed <- reason }}
	addr := startServer(t, s)
	await(t, "the net/http server", func() bool { return usedFallback(s) })
	c, br := dialRaw(t, addr)
	select {
	case why := <-handed:
		if why != "client" {
			t.Errorf("handed over for %q, want client", why)
		}
	case <-time.After(testWait):
		t.Fatal("a connection with nothing sent yet was not handed to net/http")
	}
	writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, "{}"))
	if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || decodeEcho(t, body).Body != "{}" {
		t.Fatalf("status %d: %q", resp.StatusCode, body)
	}
}

// TestDrainAnswersRequestOnIdleConnection: a request sent on an idle
// kept-alive connection just after Shutdown began is answered, with
// Connection: close, rather than lost (a regression: idle connections
// were closed at once, and a request already on its way failed with
// "server closed idle connection").
func TestDrainAnswersRequestOnIdleConnection(t *testing.T) {
	chunked := "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	cases := []struct {
		name    string
		netHTTP bool
		first   string // the request that makes the connection idle
	}{
		{"loop", false, rawRequest("POST", "/v1/chat/completions", nil, "{}")},
		{"handed over", false, chunked},
		{"server-net-http", true, rawRequest("POST", "/v1/chat/completions", nil, "{}")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend := newEchoBackend(t)
			h := newPathHandler(t, tc.netHTTP, Options{}, backend.URL)
			s := &Server{Handler: h, DrainGrace: testWait / 2}
			c, br := dialRaw(t, startServer(t, s))
			writeRaw(t, c, tc.first)
			if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || resp.Close {
				t.Fatalf("first request: status %d, close %v: %q", resp.StatusCode, resp.Close, body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			await(t, "Shutdown to begin", s.shutdown.Load)
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"n":2}`))
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != 200 || decodeEcho(t, body).Body != `{"n":2}` {
				t.Fatalf("request during the drain: status %d: %q", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Errorf("the answer during the drain lacks Connection: close: %v", resp.Header)
			}
			expectClosed(t, c, br)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			case <-time.After(testWait):
				t.Fatal("Shutdown did not return")
			}
		})
	}
}
