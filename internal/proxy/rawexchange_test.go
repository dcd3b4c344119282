package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cutover-dev/cutover/internal/pool"
)

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

// hasField reports a header field named name in a raw head.
func hasField(head, name string) bool {
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
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
