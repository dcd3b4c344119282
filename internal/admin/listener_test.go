package admin

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testWait bounds every wait on a socket in these tests; a passing test
// never gets near it.
const testWait = 10 * time.Second

// serveAdmin runs srv on 127.0.0.1 until the test ends and dials it.
func serveAdmin(t *testing.T, srv *http.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(testWait))
	return c, bufio.NewReader(c)
}

func newAdminHTTPServer(t *testing.T) *http.Server {
	t.Helper()
	s, err := New(stubCtrl{}, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewHTTPServer(s, nil)
}

// TestAdminListenerLimits: the admin listener bounds heads, whole requests
// and idle connections (a regression: a trickled body kept a connection
// open as long as bytes came).
func TestAdminListenerLimits(t *testing.T) {
	srv := newAdminHTTPServer(t)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("read-header %v, read %v, idle %v: each must be set", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
	}
	// An authorized request whose body trickles is cut at ReadTimeout.
	srv.ReadTimeout = 300 * time.Millisecond
	c, br := serveAdmin(t, srv)
	if _, err := io.WriteString(c, "POST /api/v1/retire HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "+stubToken+"\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 200 { // 10 s at most
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400 or a closed connection", resp.StatusCode)
		}
		_, err = br.ReadByte()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the trickled request still runs after %v", testWait)
	}
}

// TestAdminUnauthorizedBodyNotRead: a request without a valid token is
// answered 401 before its body is read, and its connection closed (a
// regression: net/http read the body first, so a client that never sent
// it held the connection).
func TestAdminUnauthorizedBodyNotRead(t *testing.T) {
	c, br := serveAdmin(t, newAdminHTTPServer(t))
	if _, err := io.WriteString(c, "POST /api/v1/promote HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer while the body is missing: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "unauthorized") {
		t.Fatalf("status %d: %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("the connection stays open with an unread body")
	}
}
