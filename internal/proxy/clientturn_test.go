package proxy

import (
	"net"
	"strings"
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
