package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPlainHTTPToTLSListenerIsAnswered: a client that speaks plain HTTP to
// the TLS traffic listener gets net/http's 400 "Client sent an HTTP
// request to an HTTPS server." (and nginx answers 400 too), not a silent
// close that curl reports as an empty reply (a regression: the loop
// dropped the connection without a word).
func TestPlainHTTPToTLSListenerIsAnswered(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(echoHandler))
	closeAtEnd(t, backend)
	s := &Server{Handler: newHandler(t, Options{}, "", backend.URL)}
	addr, _ := startTLSLoop(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testWait))
	if _, err := io.WriteString(c, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.0 400 Bad Request\r\n") || !strings.Contains(string(got), "HTTPS server") {
		t.Fatalf("plain HTTP to the TLS listener got %q, want net/http's 400 saying the server speaks HTTPS", got)
	}
}
