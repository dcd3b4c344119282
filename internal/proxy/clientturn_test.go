package proxy

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestServerTurnInterleavings: the loop serves a kept-alive connection's
// requests in one turn of the poller while each comes whole (serveTurn),
// and outside it otherwise. Whatever the client's writes look like after
// an answer — a whole request, a head whose body comes later, a request
// with the start of the next, a body larger than the reader, an Expect:
// 100-continue, a request the loop hands to net/http — every request is
// answered, in order, on the same connection.
func TestServerTurnInterleavings(t *testing.T) {
	backend := newEchoBackend(t)
	post := func(path, body string, header ...string) step {
		return step{req: rawRequest("POST", path, header, body), method: "POST", status: 200, uri: path, body: body}
	}
	large := strings.Repeat("L", 64<<10) // over the client reader's 4 KiB
	// A write is a piece of the client's bytes; after it, the answers to
	// the steps named by answers are read and checked.
	type write struct {
		data    string
		answers []step
		pause   bool // let the gateway read what came before the next write
	}
	a, b, c := post("/v1/a", "first"), post("/v1/b", "second"), post("/v1/c", "third")
	split := func(s step, at int) (string, string) { return s.req[:at], s.req[at:] }
	bHead, bBody := split(b, len(b.req)-len(b.body))
	cStart, cRest := split(c, 10)
	cont := post("/v1/cont", "after continue", "Expect: 100-continue")
	contHead, contBody := split(cont, len(cont.req)-len(cont.body))
	cases := []struct {
		name     string
		fallback bool // a request goes to net/http
		writes   []write
	}{
		{name: "a request after each answer", writes: []write{
			{data: a.req, answers: []step{a}}, {data: b.req, answers: []step{b}}, {data: c.req, answers: []step{c}},
		}},
		{name: "the head, then the body", writes: []write{
			{data: a.req, answers: []step{a}}, {data: bHead, pause: true}, {data: bBody, answers: []step{b}},
		}},
		{name: "the head in two writes", writes: []write{
			{data: a.req, answers: []step{a}}, {data: b.req[:20], pause: true}, {data: b.req[20:], answers: []step{b}},
		}},
		{name: "a request and the start of the next", writes: []write{
			{data: a.req, answers: []step{a}}, {data: b.req + cStart, answers: []step{b}}, {data: cRest, answers: []step{c}},
		}},
		{name: "a body larger than the reader", writes: []write{
			{data: a.req, answers: []step{a}},
			{data: post("/v1/large", large).req, answers: []step{post("/v1/large", large)}},
			{data: b.req, answers: []step{b}},
		}},
		{name: "Expect: 100-continue", writes: []write{
			{data: a.req, answers: []step{a}},
			{data: contHead, answers: []step{{method: "POST", status: 100}}},
			{data: contBody, answers: []step{cont}},
			{data: b.req, answers: []step{b}},
		}},
		{name: "a chunked request goes to net/http", fallback: true, writes: []write{
			{data: a.req, answers: []step{a}},
			{data: "POST /v1/chunked HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
				answers: []step{{method: "POST", status: 200, uri: "/v1/chunked", body: "hello"}}},
			{data: b.req, answers: []step{b}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", backend.URL)
			s := &Server{Handler: h, ReadHeaderTimeout: 2 * time.Second}
			var addr string
			if tc.fallback {
				addr = startServer(t, s)
			} else {
				addr = startLoopServer(t, s)
			}
			conn, br := dialRaw(t, addr)
			conn.(*net.TCPConn).SetNoDelay(true)
			for _, w := range tc.writes {
				writeRaw(t, conn, w.data)
				if w.pause {
					// Not a synchronisation: the answer is the same
					// either way; the pause only makes it likely that
					// the gateway reads this piece on its own.
					time.Sleep(20 * time.Millisecond)
				}
				for _, s := range w.answers {
					if s.status == 100 {
						if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
							t.Fatalf("want 100 Continue, got %q, %v", line, err)
						}
						if line, err := br.ReadString('\n'); err != nil || line != "\r\n" {
							t.Fatalf("want the end of the 100 Continue, got %q, %v", line, err)
						}
						continue
					}
					s.check(t, br, backend.URL)
				}
			}
			if tc.fallback && !usedFallback(s) {
				t.Error("the chunked request did not go to net/http")
			}
		})
	}
}

// TestServerTurnEndOfFileWithRequest: a client that sends a request and
// shuts its sending side down in one go gets its answer, then the
// connection's end, promptly (well before the idle timeout): the end of
// file that came with the request's bytes is found although the poller
// reported them once (see turnProbe). On a new connection the bytes come
// before the loop's first read; on a kept-alive one, while it waits.
func TestServerTurnEndOfFileWithRequest(t *testing.T) {
	backend := newEchoBackend(t)
	a := step{req: rawRequest("POST", "/v1/a", nil, "first"), method: "POST", status: 200, uri: "/v1/a", body: "first"}
	b := step{req: rawRequest("POST", "/v1/b", nil, "second"), method: "POST", status: 200, uri: "/v1/b", body: "second"}
	for _, kept := range []bool{false, true} {
		name := map[bool]string{false: "new connection", true: "kept-alive connection"}[kept]
		t.Run(name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", backend.URL)
			// An idle timeout the test would notice: the connection must
			// close long before it.
			addr := startLoopServer(t, &Server{Handler: h, IdleTimeout: time.Minute})
			c, br := dialRaw(t, addr)
			if kept {
				writeRaw(t, c, a.req)
				a.check(t, br, backend.URL)
			}
			writeRaw(t, c, b.req)
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			b.check(t, br, backend.URL)
			start := time.Now()
			expectClosed(t, c, br)
			if d := time.Since(start); d > 5*turnProbe {
				t.Errorf("the connection closed %v after the answer, want within %v", d, 5*turnProbe)
			}
		})
	}
}

// TestServerTurnReadFillsReader: pipelined requests that fill the
// client reader exactly, with more behind them in the socket, are all
// answered: a read that filled the reader may have left bytes no wake
// would announce, so the turn reads again before it waits.
func TestServerTurnReadFillsReader(t *testing.T) {
	backend := newEchoBackend(t)
	const readerSize = 4 << 10 // clientReaders'
	var reqs []step
	var all strings.Builder
	for i := range 4 {
		path := "/v1/r" + string(rune('0'+i))
		// Each request is readerSize/4 bytes long.
		body := ""
		for n := readerSize / 4; ; n-- {
			if body = strings.Repeat("p", n); len(rawRequest("POST", path, nil, body)) <= readerSize/4 {
				break
			}
		}
		s := step{req: rawRequest("POST", path, nil, body), method: "POST", status: 200, uri: path, body: body}
		if len(s.req) != readerSize/4 {
			t.Fatalf("request of %d bytes, want %d", len(s.req), readerSize/4)
		}
		reqs = append(reqs, s)
		all.WriteString(s.req)
	}
	last := step{req: rawRequest("POST", "/v1/last", nil, "behind"), method: "POST", status: 200, uri: "/v1/last", body: "behind"}
	reqs = append(reqs, last)
	all.WriteString(last.req)
	h := newHandler(t, Options{}, "", backend.URL)
	var probes atomic.Int32
	s := &Server{Handler: h, IdleTimeout: time.Minute, onProbe: func() { probes.Add(1) }}
	c, br := dialRaw(t, startLoopServer(t, s))
	first := step{req: rawRequest("POST", "/v1/first", nil, "one"), method: "POST", status: 200, uri: "/v1/first", body: "one"}
	writeRaw(t, c, first.req) // the turn then waits, without a read
	first.check(t, br, backend.URL)
	writeRaw(t, c, all.String())
	for _, s := range reqs {
		s.check(t, br, backend.URL)
	}
	// Answered at all, the requests behind a full read could still have
	// waited for the probe (turnProbe) instead of being read at once.
	if n := probes.Load(); n > 0 {
		t.Errorf("%d waits ended at the probe: the bytes behind a full read waited for it", n)
	}
}
