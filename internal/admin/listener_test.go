package admin

import (
	"bufio"
	"errors"
	"fmt"
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

func newAdminHTTPServer(t *testing.T, bodyTimeout time.Duration) *http.Server {
	t.Helper()
	s, err := New(stubCtrl{}, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bodyTimeout > 0 {
		s.bodyTimeout = bodyTimeout
	}
	return NewHTTPServer(s, nil)
}

// TestAdminListenerLimits: the admin listener bounds heads, bodies and
// idle connections (a regression: a trickled body kept a connection open
// as long as bytes came).
func TestAdminListenerLimits(t *testing.T) {
	if srv := newAdminHTTPServer(t, 0); srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("read-header %v, idle %v: each must be set", srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
	// An authorized request whose body trickles is cut at the body's
	// deadline.
	c, br := serveAdmin(t, newAdminHTTPServer(t, 300*time.Millisecond))
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
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "request_timeout") {
		t.Fatalf("status %d: %q", resp.StatusCode, body)
	}
	_, err = br.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection stays open after the answer: %v", err)
	}
}

// TestAdminBodyStillRead: a body that arrives in time reaches its handler,
// and an oversized one is refused.
func TestAdminBodyStillRead(t *testing.T) {
	for _, tc := range []struct {
		body     string
		declared int // 0: len(body)
		status   int
	}{
		{`{"force": true}`, 0, http.StatusOK},
		{`{"force": tru`, 0, http.StatusBadRequest},
		{`{`, maxBodyBytes + 1, http.StatusRequestEntityTooLarge},
	} {
		c, br := serveAdmin(t, newAdminHTTPServer(t, 0))
		n := tc.declared
		if n == 0 {
			n = len(tc.body)
		}
		req := fmt.Sprintf("POST /api/v1/retire HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", stubToken, n, tc.body)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%.20q: status %d, want %d", tc.body, resp.StatusCode, tc.status)
		}
	}
}

// TestAdminUnauthorizedBodyNotRead: a request without a valid token is
// answered 401 before its body is read, and its connection closed (a
// regression: net/http read the body first, so a client that never sent
// it held the connection).
func TestAdminUnauthorizedBodyNotRead(t *testing.T) {
	c, br := serveAdmin(t, newAdminHTTPServer(t, 0))
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

// TestAdminListenerHeadLimit: a request head over 64 KiB gets 431, as on
// the traffic listener (net/http's default let 1 MiB through to the token
// check: a 70 KB header got 401).
func TestAdminListenerHeadLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"small", 1 << 10, http.StatusUnauthorized},
		{"70 KB", 70 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := serveAdmin(t, newAdminHTTPServer(t, 0))
			req := "GET /api/v1/status HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("a", tc.size) + "\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}
