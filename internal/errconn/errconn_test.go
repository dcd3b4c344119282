package errconn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testWait bounds every wait on a socket here.
const testWait = 10 * time.Second

// netHTTPAnswer sends raw to a bare net/http server and returns all it
// wrote back, up to its close.
func netHTTPAnswer(t *testing.T, h http.Handler, raw string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, MaxHeaderBytes: 1 << 10, ReadHeaderTimeout: testWait}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testWait))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Logf("reading the answer: %v", err)
	}
	return b
}

// testBody is a Body in the OpenAI error shape, as the listeners' are.
func testBody(status int, why string) []byte {
	if why == "" {
		why = http.StatusText(status)
	}
	type body struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	}
	b, _ := json.Marshal(map[string]body{"error": {"malformed request: " + why, "invalid_request_error", Code(status)}})
	return b
}

// answer is what Write writes for p with testBody, and whether p was
// net/http's own error answer.
func answer(p []byte) ([]byte, bool) {
	var b bytes.Buffer
	if _, err := Write(&b, p, testBody); err != nil {
		panic(err)
	}
	return b.Bytes(), !bytes.Equal(b.Bytes(), p)
}

// TestNetHTTPErrorAnswer pins Parse to what the running Go's
// net/http server writes by itself to requests it cannot read, and checks
// that answers its handlers write are never taken for those.
func TestNetHTTPErrorAnswer(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The look-alike a handler could write: text/plain, close, 400.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "400 Bad Request")
	})
	for _, tc := range []struct {
		name   string
		raw    string
		status int
		code   string
		typ    string
		msg    string // in the message
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "bad_request", "invalid_request_error", "malformed request: Bad Request"},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400, "bad_request", "invalid_request_error", "missing required Host header"},
		{"bad header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad_request", "invalid_request_error", "malformed request"},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431, "request_header_too_large", "invalid_request_error", "Request Header Fields Too Large"},
		{"HTTP version", "GET / HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http_version_not_supported", "invalid_request_error", "unsupported protocol version"},
		{"unsupported transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "unsupported_transfer_encoding", "invalid_request_error", "unsupported transfer encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := netHTTPAnswer(t, ok, tc.raw)
			if !strings.Contains(string(raw), netHTTPHeaders) {
				t.Fatalf("net/http answered %q, not in the form Parse knows: update it to this Go's net/http", raw)
			}
			ans, matched := answer(raw)
			if !matched {
				t.Fatalf("net/http's own answer %q not recognised", raw)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(ans))), nil)
			if err != nil {
				t.Fatalf("rewritten answer %q: %v", ans, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
				t.Fatalf("rewritten answer: status %d, headers %v (want %d, JSON, close)", resp.StatusCode, resp.Header, tc.status)
			}
			var v struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if v.Error.Code != tc.code || v.Error.Type != tc.typ || !strings.Contains(v.Error.Message, tc.msg) {
				t.Errorf("error %+v, want code %s, type %s, a message with %q", v.Error, tc.code, tc.typ, tc.msg)
			}
		})
	}
	// A handler's answer that looks alike is passed on as it is.
	raw := netHTTPAnswer(t, ok, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, matched := answer(raw); matched {
		t.Fatalf("a handler's answer %q taken for net/http's own", raw)
	}
	for _, p := range []string{"", "HTTP/1.1 200 OK" + netHTTPHeaders + "ok", "HTTP/1.1 999 Nope" + netHTTPHeaders + "x", "HTTP/1.1 400 Bad Request" + netHTTPHeaders + "a\r\nb"} {
		if _, matched := answer([]byte(p)); matched {
			t.Errorf("%q taken for net/http's own error answer", p)
		}
	}
}

// TestListener: a request net/http cannot read, on a connection from a
// Listener, gets the error shape; a good one its handler's answer.
func TestListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fine") })}
	go func() { _ = srv.Serve(Listener(ln, testBody)) }()
	defer srv.Close()
	for _, tc := range []struct {
		raw, want string
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "fine"},
		{"GET / HTTP/1.1\r\n\r\n", `{"error":{"message":"malformed request: missing required Host header","type":"invalid_request_error","code":"bad_request"}}`},
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(testWait))
		_, _ = io.WriteString(c, tc.raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if string(body) != tc.want {
			t.Errorf("%q answered %q, want %q", tc.raw, body, tc.want)
		}
	}
}

// FuzzAnswer: whatever the bytes, a rewritten answer is one HTTP/1.1
// response with a JSON error body of the declared length, the status it
// came with, and Connection: close.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 400 Bad Request" + netHTTPHeaders + "400 Bad Request"))
	f.Add([]byte("HTTP/1.1 400 Bad Request: missing required Host header" + netHTTPHeaders + "400 Bad Request: missing required Host header"))
	f.Add([]byte("HTTP/1.1 501 Not Implemented" + netHTTPHeaders + "Unsupported transfer encoding"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Fuzz(func(t *testing.T, p []byte) {
		ans, ok := answer(p)
		if !ok {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(ans))), nil)
		if err != nil {
			t.Fatalf("answer(%q) = %q: %v", p, ans, err)
		}
		body, err := io.ReadAll(resp.Body)
		var v struct {
			Error struct{ Message, Type, Code string }
		}
		if err != nil || json.Unmarshal(body, &v) != nil || v.Error.Message == "" || v.Error.Code == "" || !resp.Close ||
			int64(len(body)) != resp.ContentLength || string(p[9:12]) != strconv.Itoa(resp.StatusCode) {
			t.Fatalf("answer(%q) = %q (body %q, %v)", p, ans, body, err)
		}
	})
}
