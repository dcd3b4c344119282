package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The adversarial suite: what a hostile client or a misbehaving replica
// can send the traffic listener, and, for each, the client's answer and
// the exact bytes the replica received. Replicas always get a head the
// gateway wrote; ambiguous framings go to net/http; nothing a replica
// sends out of turn reaches a client.

// recorder is a replica over raw TCP that keeps every byte it receives,
// and answers each request it can read with a small JSON 200.
type recorder struct {
	url  string
	host string

	mu    sync.Mutex
	conns []*bytes.Buffer // what each connection received, in accept order
}

const recorderAnswer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\":true}\n"

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	r.url = rawBackend(t, func(c net.Conn) {
		buf := new(bytes.Buffer)
		r.mu.Lock()
		r.conns = append(r.conns, buf)
		r.mu.Unlock()
		br := bufio.NewReader(io.TeeReader(c, lockedWriter{&r.mu, buf}))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if _, err := io.WriteString(c, recorderAnswer); err != nil {
				return
			}
		}
	})
	r.host = strings.TrimPrefix(r.url, "http://")
	return r
}

// received is every byte the replica read, its connections one after
// the other.
func (r *recorder) received() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, c := range r.conns {
		b.Write(c.Bytes())
	}
	return b.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// forwarded is the head (and body) the gateway writes to the replica for
// a request from 127.0.0.1 with no end-to-end header; {replica} stands
// for the replica's address.
func forwarded(method, target, header string, body string) string {
	s := method + " " + target + " HTTP/1.1\r\nHost: {replica}\r\n" + header + "X-Forwarded-For: 127.0.0.1\r\nX-Cutover-Hops: 1\r\n"
	if body != "" || method == http.MethodPost {
		s += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	return s + "\r\n" + body
}

const chat = "/v1/chat/completions"

// TestHostileRequests sends smuggling framings and malformed heads to the
// Server, each on a fresh connection, and checks the answer, whether the
// connection closed after it, and the exact bytes the replica got.
func TestHostileRequests(t *testing.T) {
	const head = "POST " + chat + " HTTP/1.1\r\nHost: g\r\n"
	cases := []struct {
		name    string
		raw     string
		status  int
		code    string // the gateway's own error code, if it answers one
		closes  bool   // the connection closes after the answer
		replica string // what the replica receives ("" nothing)
	}{
		// Request smuggling: both framings. net/http reads the body by
		// Transfer-Encoding; the connection then closes, so bytes past
		// the body are never read as a request.
		{name: "CL.TE", raw: head + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/admin HTTP/1.1\r\nHost: g\r\n\r\n",
			status: 200, closes: true, replica: forwarded("POST", chat, "", "")},
		{name: "TE.CL", raw: head + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
			status: 200, closes: true, replica: forwarded("POST", chat, "", "SMUGGLED")},
		{name: "CL.TE with bare LF line ends", raw: "POST " + chat + " HTTP/1.1\nHost: g\nContent-Length: 6\nTransfer-Encoding: chunked\n\n0\r\n\r\nGET /v1/admin HTTP/1.1\r\nHost: g\r\n\r\n",
			status: 200, closes: true, replica: forwarded("POST", chat, "", "")},
		{name: "CL.TE with the CL after a fold", raw: head + "X-A: a\r\n b\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			status: 200, closes: true, replica: forwarded("POST", chat, "X-A: a b\r\n", "")},
		// Transfer codings other than chunked alone: net/http refuses them.
		{name: "TE chunked, identity", raw: head + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", status: 501, code: "unsupported_transfer_encoding", closes: true},
		{name: "TE xchunked", raw: head + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", status: 501, code: "unsupported_transfer_encoding", closes: true},
		{name: "TE identity", raw: head + "Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}", status: 501, code: "unsupported_transfer_encoding", closes: true},
		{name: "TE twice", raw: head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 501, code: "unsupported_transfer_encoding", closes: true},
		{name: "TE with a space before the colon", raw: head + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", status: 400, code: "bad_request", closes: true},
		{name: "TE in another case", raw: head + "transfer-encoding: CHUNKED\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
			status: 200, replica: forwarded("POST", chat, "", "{}")},
		// Transfer-Encoding in HTTP/1.0: faulty framing (RFC 9112 section
		// 6.1). net/http would ignore it and forward an empty body.
		{name: "TE in HTTP/1.0", raw: "POST " + chat + " HTTP/1.0\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", status: 400, code: "bad_request", closes: true},
		{name: "TE and CL in HTTP/1.0", raw: "POST " + chat + " HTTP/1.0\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		// Content-Length variants.
		{name: "duplicate CL, same value", raw: head + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
			status: 200, replica: forwarded("POST", chat, "", "{}")},
		{name: "duplicate CL, other value", raw: head + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x", status: 400, code: "bad_request", closes: true},
		{name: "duplicate CL, same number in other text", raw: head + "Content-Length: 2\r\nContent-Length: 02\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL list", raw: head + "Content-Length: 2, 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL with a plus sign", raw: head + "Content-Length: +2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL negative", raw: head + "Content-Length: -1\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL in hex", raw: head + "Content-Length: 0x2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL with an inner space", raw: head + "Content-Length: 1 1\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL with blanks around", raw: head + "Content-Length: \t2 \t\r\n\r\n{}",
			status: 200, replica: forwarded("POST", chat, "", "{}")},
		{name: "CL with leading zeros", raw: head + "Content-Length: 0002\r\n\r\n{}",
			status: 200, replica: forwarded("POST", chat, "", "{}")},
		{name: "CL with a plus sign after a blank", raw: head + "Content-Length:  +2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL empty", raw: head + "Content-Length: \r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL after a vertical tab", raw: head + "Content-Length: \v2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL after a form feed", raw: head + "Content-Length:\f2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL after a no-break space", raw: head + "Content-Length: \xc2\xa02\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL in fullwidth digits", raw: head + "Content-Length: \xef\xbc\x92\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL over 2^63", raw: head + "Content-Length: 9223372036854775808\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "CL of 19 digits", raw: head + "Content-Length: 1000000000000000000\r\n\r\n{}", status: 413, code: "request_too_large", closes: true},
		// Obsolete line folding: net/http joins the lines.
		{name: "obs-fold", raw: head + "X-A: a\r\n  b\r\nContent-Length: 2\r\n\r\n{}",
			status: 200, replica: forwarded("POST", chat, "X-A: a b\r\n", "{}")},
		{name: "obs-fold into CL", raw: head + "Content-Length: 2\r\n 0\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "fold as the first header line", raw: "POST " + chat + " HTTP/1.1\r\n Host: g\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		// Line ends and control bytes.
		{name: "bare LF line ends", raw: "POST " + chat + " HTTP/1.1\nHost: g\nContent-Length: 2\n\n{}",
			status: 200, replica: forwarded("POST", chat, "", "{}")},
		{name: "bare CR inside a value", raw: head + "X-A: a\rContent-Length: 5\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "bare CR ending a line", raw: "POST " + chat + " HTTP/1.1\r\nHost: g\rContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "bare CR in the target", raw: "POST /v1/a\rb HTTP/1.1\r\nHost: g\r\n\r\n", status: 400, code: "bad_request", closes: true},
		{name: "NUL in a value", raw: head + "X-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "NUL in a name", raw: head + "X-\x00A: b\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		// Hosts.
		{name: "two Hosts", raw: head + "Host: h\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "Host with a slash", raw: head[:len(head)-3] + "/x\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		// What net/http's server refuses in plain text before a handler
		// runs gets the same status in the OpenAI error shape.
		{name: "HTTP/9.9", raw: "POST " + chat + " HTTP/9.9\r\nHost: g\r\nContent-Length: 2\r\n\r\n{}", status: 505, code: "http_version_not_supported", closes: true},
		{name: "HTTP/2.0 without the preface", raw: "POST " + chat + " HTTP/2.0\r\nHost: g\r\nContent-Length: 2\r\n\r\n{}", status: 505, code: "http_version_not_supported", closes: true},
		{name: "a space in the target", raw: "POST /v1/ chat HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\n{}", status: 400, code: "bad_request", closes: true},
		{name: "Expect other than 100-continue", raw: head + "Expect: something\r\nContent-Length: 2\r\n\r\n{}", status: 417, code: "expectation_failed", closes: true},
		{name: "HTTP/1.0 without Host", raw: "POST " + chat + " HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
			status: 200, closes: true, replica: forwarded("POST", chat, "", "{}")},
		// Hop-by-hop headers named by Connection never reach the replica.
		{name: "Connection names end-to-end headers", raw: head + "Connection: x-a, AUTHORIZATION\r\nX-A: 1\r\nAuthorization: k\r\nX-B: 2\r\nContent-Length: 2\r\n\r\n{}",
			status: 200, replica: forwarded("POST", chat, "X-B: 2\r\n", "{}")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t)
			h := newHandler(t, Options{}, "", rec.url)
			c, br := dialRaw(t, startServer(t, &Server{Handler: h}))
			_, _ = io.WriteString(c, tc.raw) // the Server may answer and close before reading all of it
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %q", resp.StatusCode, tc.status, body)
			}
			if tc.code != "" {
				checkAPIError(t, body, tc.code)
			}
			if tc.closes {
				if !resp.Close {
					t.Error("the answer does not say Connection: close")
				}
				expectClosed(t, c, br)
			}
			want := strings.ReplaceAll(tc.replica, "{replica}", rec.host)
			if got := rec.received(); got != want {
				t.Errorf("the replica received\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestHostileReplicaHeaders: a control byte in a replica's response head
// (a bare CR above all, which a client would read as a line end: response
// splitting) makes the answer a 502; nothing of it is relayed. net/http's
// client refuses the same, and nginx.
func TestHostileReplicaHeaders(t *testing.T) {
	cases := []struct{ name, answer string }{
		{"bare CR in a value", "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: pwned=1\r\nContent-Length: 2\r\n\r\nok"},
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00pwned\r\nContent-Length: 2\r\n\r\nok"},
		{"bare CR ending a value", "HTTP/1.1 200 OK\r\nX-A: pwned\r\r\nContent-Length: 2\r\n\r\nok"},
		{"DEL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x7fpwned\r\nContent-Length: 2\r\n\r\nok"},
		{"bare LF splitting a value", "HTTP/1.1 200 OK\r\nX-A: a\npwned\r\nContent-Length: 2\r\n\r\nok"},
	}
	for _, fe := range frontends {
		for _, tc := range cases {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				replica := rawBackend(t, rawAnswers(tc.answer, false))
				h := newHandler(t, Options{}, "", replica)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("POST", chat, nil, "{}"))
				head := peekHead(t, br)
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d, want 502: %q", resp.StatusCode, body)
				}
				checkAPIError(t, body, "upstream_unreachable")
				// (The error message may quote the line, JSON-escaped.)
				if strings.Contains(head, "pwned") || strings.ContainsAny(body, "\r\x00\x7f") {
					t.Errorf("the replica's header reached the client:\n%q\n%q", head, body)
				}
			})
		}
	}
}

// TestHostileReplicaReasonPhrase: the loop relays the replica's reason
// phrase, so one with a control byte is refused like a header value.
func TestHostileReplicaReasonPhrase(t *testing.T) {
	replica := rawBackend(t, rawAnswers("HTTP/1.1 200 O\rSet-Cookie: pwned=1\r\nContent-Length: 2\r\n\r\nok", false))
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "", replica)
			c, br := dialRaw(t, fe.start(t, h))
			writeRaw(t, c, rawRequest("POST", chat, nil, "{}"))
			head := peekHead(t, br)
			resp, body := readResp(t, br, "POST")
			if strings.Contains(head, "pwned") {
				t.Fatalf("the replica's reason phrase reached the client: %q", head)
			}
			if fe.name == "loop" && resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502: %q", resp.StatusCode, body)
			}
		})
	}
}

// TestHostileStrayReplicaBytes: a replica that sends bytes after a HEAD
// answer (here, a whole second answer) must not have them read as the
// answer to the next client's request on its pooled connection, however
// soon that comes (a regression: connections idle under 250 ms were reused
// unchecked, and the next client got "EVIL!").
func TestHostileStrayReplicaBytes(t *testing.T) {
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			sendStray, strayOut := make(chan struct{}), make(chan struct{})
			replica := rawBackend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if req.Method != http.MethodHead {
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ngood!")
						continue
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
					select {
					case <-sendStray:
					case <-time.After(testWait):
						return
					}
					_, _ = io.WriteString(c, stray)
					close(strayOut)
				}
			})
			addr := fe.start(t, newHandler(t, Options{}, "", replica))
			a, abr := dialRaw(t, addr)
			writeRaw(t, a, rawRequest("HEAD", "/v1/x", nil, ""))
			if resp, _ := readResp(t, abr, "HEAD"); resp.StatusCode != 200 {
				t.Fatalf("HEAD: status %d", resp.StatusCode)
			}
			close(sendStray)
			<-strayOut
			b, bbr := dialRaw(t, addr)
			writeRaw(t, b, rawRequest("GET", "/v1/x", nil, ""))
			if resp, body := readResp(t, bbr, "GET"); resp.StatusCode != 200 || body != "good!" {
				t.Fatalf("the next client got %d %q, want 200 good!", resp.StatusCode, body)
			}
		})
	}
}

// TestHeaderFieldLimit: MaxHeaderFields counts a request's header lines,
// Host included: 100 by default, 431 beyond.
func TestHeaderFieldLimit(t *testing.T) {
	for _, tc := range []struct {
		fields, status int
	}{{100, 200}, {101, 431}} {
		t.Run(strconv.Itoa(tc.fields), func(t *testing.T) {
			rec := newRecorder(t)
			c, br := dialRaw(t, startLoopServer(t, &Server{Handler: newHandler(t, Options{}, "", rec.url)}))
			header := make([]string, tc.fields-2) // and Host, Content-Length
			for i := range header {
				header[i] = "X-" + strconv.Itoa(i) + ": v"
			}
			writeRaw(t, c, rawRequest("POST", chat, header, "{}"))
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %q", resp.StatusCode, tc.status, body)
			}
			if tc.status == 431 {
				checkAPIError(t, body, "request_header_too_large")
			}
		})
	}
}

// hostileHeads are request heads of about 1 MiB, each in a shape that
// once cost something per pair of its parts (quadratic stripping of the
// headers Connection lists: 254 s of CPU for 900 KB) or per byte.
func hostileHeads() []struct{ name, raw string } {
	const size = 1 << 20
	var list, fields strings.Builder
	list.WriteString("POST " + chat + " HTTP/1.1\r\nHost: g\r\nConnection: ")
	for list.Len() < size/2 {
		list.WriteString("b,")
	}
	list.WriteString("b\r\n")
	for list.Len() < size {
		list.WriteString("b: 1\r\n") // each one listed
	}
	for fields.WriteString("POST " + chat + " HTTP/1.1\r\nHost: g\r\n"); fields.Len() < size; {
		fields.WriteString("Connection: x\r\nx: 1\r\n")
	}
	return []struct{ name, raw string }{
		{"Connection list and many fields", list.String()},
		{"many Connection fields", fields.String()},
		{"one long value", "POST " + chat + " HTTP/1.1\r\nHost: g\r\nX-A: " + strings.Repeat("a", size) + "\r\n"},
		{"long request line", "POST /v1/" + strings.Repeat("a", size) + " HTTP/1.1\r\nHost: g\r\n"},
	}
}

// TestHostileHeads: a 1 MiB head of any shape is refused with 431 under
// the default limits; under limits raised to take it, it is served, and
// the headers its Connection fields list do not reach the replica. (How
// long it takes is BenchmarkHostileHead's business; without linear
// stripping the first shape would take minutes.)
func TestHostileHeads(t *testing.T) {
	end := "X-Keep: 1\r\nContent-Length: 2\r\n\r\n{}"
	for _, hh := range hostileHeads() {
		t.Run("default limits/"+hh.name, func(t *testing.T) {
			rec := newRecorder(t)
			c, br := dialRaw(t, startServer(t, &Server{Handler: newHandler(t, Options{}, "", rec.url)}))
			go func() { _, _ = io.WriteString(c, hh.raw+end) }() // the Server answers before reading it all
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %d, want 431: %.200q", resp.StatusCode, body)
			}
			checkAPIError(t, body, "request_header_too_large")
			expectClosed(t, c, br)
			if got := rec.received(); got != "" {
				t.Errorf("the replica received %.200q", got)
			}
		})
	}
	for _, hh := range hostileHeads()[:2] {
		for _, version := range []string{"HTTP/1.1", "HTTP/1.0"} { // the loop, and net/http's server
			t.Run("raised limits/"+hh.name+"/"+version, func(t *testing.T) {
				rec := newRecorder(t)
				s := &Server{Handler: newHandler(t, Options{}, "", rec.url), MaxHeaderBytes: 2 << 20, MaxHeaderFields: 1 << 20}
				c, br := dialRaw(t, startServer(t, s))
				go func() { _, _ = io.WriteString(c, strings.Replace(hh.raw, "HTTP/1.1", version, 1)+end) }()
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %.200q", resp.StatusCode, body)
				}
				want := strings.ReplaceAll(forwarded("POST", chat, "X-Keep: 1\r\n", "{}"), "{replica}", rec.host)
				if got := rec.received(); got != want {
					t.Errorf("the replica received\n%.300q\nwant\n%q", got, want)
				}
			})
		}
	}
}

// BenchmarkHostileHead serves each 1 MiB head of hostileHeads on a new
// connection to a Server, under the default limits (431) and under limits
// raised to take it (served). The goal (issue 16): under 50 ms of CPU per
// head of any shape, where quadratic header stripping took 254 s; Go's
// ReverseProxy takes about 20 ms.
func BenchmarkHostileHead(b *testing.B) {
	backend := rawBackendB(b)
	for _, raised := range []bool{false, true} {
		for _, hh := range hostileHeads() {
			name := "default/" + hh.name
			s := &Server{Handler: benchHandler(b, backend)}
			if raised {
				if strings.HasPrefix(hh.name, "long") || strings.HasPrefix(hh.name, "one") {
					continue // net/http's own line limits answer these
				}
				name = "raised/" + hh.name
				s.MaxHeaderBytes, s.MaxHeaderFields = 2<<20, 1<<20
			}
			raw := hh.raw + "Content-Length: 2\r\n\r\n{}"
			b.Run(name, func(b *testing.B) {
				addr := startServerB(b, s)
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					go func() { _, _ = io.WriteString(c, raw) }()
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = c.Close()
				}
			})
		}
	}
}

func rawBackendB(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, recorderAnswer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func benchHandler(b *testing.B, backend string) *Handler {
	u := &Upstream{}
	b.Cleanup(u.CloseIdleConnections)
	h := New(Options{Transport: u, Logger: quiet})
	h.Apply(benchTable(b, backend))
	return h
}

func startServerB(b *testing.B, s *Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	b.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String()
}

// TestHostileFramingAfterHandOff: a request with both Content-Length and
// Transfer-Encoding on a connection already handed to net/http (a chunked
// request first) is answered, then the connection closes (RFC 9112
// section 6.1), as on the loop. net/http deletes the Content-Length before
// the Handler runs, so only the bytes it read tell.
func TestHostileFramingAfterHandOff(t *testing.T) {
	const head = "POST " + chat + " HTTP/1.1\r\nHost: g\r\n"
	const first = head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	cases := []struct {
		name   string
		second string
		closes bool
	}{
		{"CL.TE", head + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"TE.CL", head + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\n{}\r\n0\r\n\r\n", true},
		{"CL.TE in other cases, bare LF", "POST " + chat + " HTTP/1.1\nHost: g\ncontent-length: 6\nTRANSFER-ENCODING: chunked\n\n0\r\n\r\n", true},
		{"TE only", first, false},
		{"CL only", head + "Content-Length: 2\r\n\r\n{}", false},
		{"CL in the previous head", head + "Content-Length: 2\r\n\r\n{}" + head + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t)
			h := newHandler(t, Options{}, "", rec.url)
			handed := make(chan string, 4)
			c, br := dialRaw(t, startServer(t, &Server{Handler: h, OnFallback: func(why string) { handed <- why }}))
			writeRaw(t, c, first)
			if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || resp.Close {
				t.Fatalf("first: status %d, close %v: %q", resp.StatusCode, resp.Close, body)
			}
			if why := <-handed; why != "chunked_body" {
				t.Fatalf("hand-off for %q, want chunked_body", why)
			}
			writeRaw(t, c, tc.second)
			answers := strings.Count(tc.second, "POST ")
			for i := range answers {
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != 200 {
					t.Fatalf("answer %d: status %d: %q", i+1, resp.StatusCode, body)
				}
				if last := i == answers-1; last && resp.Close != tc.closes {
					t.Errorf("answer %d says close %v, want %v", i+1, resp.Close, tc.closes)
				}
			}
			if tc.closes {
				expectClosed(t, c, br)
				return
			}
			writeRaw(t, c, head+"Content-Length: 2\r\n\r\n{}")
			if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 {
				t.Fatalf("after: status %d: %q", resp.StatusCode, body)
			}
		})
	}
}

// TestFramingScanSplit: the conflict, and Transfer-Encoding in an
// HTTP/1.0 head, are seen however the bytes arrive.
func TestFramingScanSplit(t *testing.T) {
	cases := []struct {
		raw            string
		want, http10TE bool
	}{
		{"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", true, false},
		{"POST / HTTP/1.1\nTransfer-Encoding: chunked\nX: y\ncontent-length: 6\n\n", true, false},
		{"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.1\r\nX-Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.1\r\nX: a\r\n Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", false, true},
		{"POST /v1/chat/completions HTTP/1.0\ntransfer-encoding: x\ncontent-length: 2\n\n{}", true, true},
		{"{}POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", false, true}, // after a body without a line end
		{"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.0 \r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.01\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.1\r\nX: HTTP/1.0\r\n\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
	}
	for _, tc := range cases {
		for cut := range len(tc.raw) {
			for cut2 := cut; cut2 < min(cut+12, len(tc.raw)); cut2++ { // and in three pieces
				var f framingScan
				f.scan([]byte(tc.raw[:cut]))
				f.scan([]byte(tc.raw[cut:cut2]))
				f.scan([]byte(tc.raw[cut2:]))
				if got, got10 := f.conflict.Load(), f.http10TE.Load(); got != tc.want || got10 != tc.http10TE {
					t.Fatalf("%q cut at %d and %d: conflict %v, HTTP/1.0 with Transfer-Encoding %v; want %v, %v", tc.raw, cut, cut2, got, got10, tc.want, tc.http10TE)
				}
			}
		}
	}
}

// TestHostileTransferEncoding: requests whose Transfer-Encoding the
// gateway cannot honour are refused, and the connection closes, on every
// path the Server serves them by: the loop, a connection already handed
// to net/http, and net/http alone (proxy.client net/http). The replica
// gets nothing of them.
//
// An HTTP/1.0 request with the field has faulty framing (RFC 9112 section
// 6.1): 400 in the OpenAI shape, naming the reason, everywhere (a
// regression: net/http ignores the field in HTTP/1.0 and the request was
// forwarded with an empty body; nginx answers 400). An HTTP/1.1 request
// with a coding other than chunked alone gets 501, as from net/http and
// nginx, which answers it in plain text on its paths.
func TestHostileTransferEncoding(t *testing.T) {
	const line = "POST " + chat + " HTTP/1.0\r\n"
	const head = "POST " + chat + " HTTP/1.1\r\nHost: g\r\n"
	const first = head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	requests := []struct {
		name, raw string
		status    int
	}{
		{"HTTP/1.0 chunked", line + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400},
		{"HTTP/1.0 chunked and CL", line + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}", 400},
		{"HTTP/1.0 CL and chunked, kept alive, bare LF", "POST " + chat + " HTTP/1.0\nConnection: keep-alive\nContent-Length: 2\ntransfer-ENCODING: chunked\n\n{}", 400},
		{"HTTP/1.0 identity", line + "Host: g\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"HTTP/1.0 empty", line + "Transfer-Encoding:\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"chunked, identity", head + "Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501},
		{"gzip, chunked", head + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501},
		{"identity and CL", head + "Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}", 501},
	}
	paths := []struct {
		name    string
		netHTTP bool   // proxy.client net/http
		first   string // sent and answered first, on the same connection
		why     string // the hand-off reason
	}{
		{name: "loop"},
		{name: "after hand-off", first: first, why: "chunked_body"},
		{name: "net-http client", netHTTP: true, why: "client"},
	}
	for _, p := range paths {
		for _, rq := range requests {
			t.Run(p.name+"/"+rq.name, func(t *testing.T) {
				rec := newRecorder(t)
				handed := make(chan string, 4)
				s := &Server{Handler: newPathHandler(t, p.netHTTP, Options{}, rec.url), OnFallback: func(why string) { handed <- why }}
				c, br := dialRaw(t, startServer(t, s))
				want := ""
				if p.first != "" {
					writeRaw(t, c, p.first)
					if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 {
						t.Fatalf("first: status %d: %q", resp.StatusCode, body)
					}
					want = strings.ReplaceAll(forwarded("POST", chat, "", "{}"), "{replica}", rec.host)
				}
				_, _ = io.WriteString(c, rq.raw) // the Server may answer and close before reading all of it
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != rq.status {
					t.Fatalf("status %d, want %d: %q", resp.StatusCode, rq.status, body)
				}
				switch {
				case rq.status == 400:
					checkAPIError(t, body, "bad_request")
					if !strings.Contains(body, "Transfer-Encoding in an HTTP/1.0 request") {
						t.Errorf("the message does not name the reason: %q", body)
					}
				case p.why == "":
					checkAPIError(t, body, "unsupported_transfer_encoding")
				}
				if !resp.Close {
					t.Error("the answer does not say Connection: close")
				}
				expectClosed(t, c, br)
				if got := rec.received(); got != want {
					t.Errorf("the replica received\n%q\nwant\n%q", got, want)
				}
				select {
				case why := <-handed:
					if why != p.why {
						t.Errorf("handed to net/http for %q, want %q", why, p.why)
					}
				default:
					if p.why != "" {
						t.Errorf("not handed to net/http, want %q", p.why)
					}
				}
			})
		}
	}
}
