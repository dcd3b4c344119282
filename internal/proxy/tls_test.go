package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/tlsfile/tlstest"
)

// startTLSLoop runs s on a TLS listener (as the gateway wraps one) and
// returns its address and a client config trusting it. usedFallback is
// checked by the caller where the loop itself is meant.
func startTLSLoop(t *testing.T, s *Server) (string, *tls.Config) {
	t.Helper()
	ca := tlstest.NewCA(t, "test CA")
	cert := ca.Pair(t, "gateway")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.ReadHeaderTimeout == 0 {
		s.ReadHeaderTimeout = 2 * time.Second
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case err := <-served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(testWait):
			t.Error("Serve did not return after Close")
		}
	})
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool()}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(testWait))
	return c, bufio.NewReader(c)
}

// TestServerOverTLS: the connection loop serves a TLS listener itself:
// keep-alive and pipelined requests, a stream relayed event by event, a
// request pipelined while a slow answer is awaited (the hang-up watcher
// reads the TLS connection), and the client hanging up mid-stream, which
// stops the replica's work.
func TestServerOverTLS(t *testing.T) {
	started, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range []string{"one", "two"} {
				_, _ = io.WriteString(w, "data: "+ev+"\n\n")
				w.(http.Flusher).Flush()
			}
			if r.URL.RawQuery == "hang" {
				started <- struct{}{}
				<-r.Context().Done()
				cancelled <- struct{}{}
				return
			}
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
		case "/v1/slow":
			started <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			echoHandler(w, r)
		default:
			echoHandler(w, r)
		}
	}))
	closeAtEnd(t, backend)
	s := &Server{Handler: newHandler(t, Options{}, "", backend.URL)}
	addr, client := startTLSLoop(t, s)
	t.Cleanup(func() {
		if usedFallback(s) {
			t.Error("a TLS connection went to the net/http fallback; the loop must serve it")
		}
	})

	t.Run("keep-alive and pipelining", func(t *testing.T) {
		c, br := dialTLS(t, addr, client)
		a := step{req: rawRequest("POST", "/v1/a", nil, "first"), method: "POST", status: 200, uri: "/v1/a", body: "first"}
		b := step{req: rawRequest("POST", "/v1/b", nil, strings.Repeat("x", 40<<10)), method: "POST", status: 200, uri: "/v1/b", body: strings.Repeat("x", 40<<10)}
		writeRaw(t, c, a.req+b.req)
		a.check(t, br, backend.URL)
		b.check(t, br, backend.URL)
		writeRaw(t, c, a.req)
		a.check(t, br, backend.URL)
	})
	t.Run("stream", func(t *testing.T) {
		c, br := dialTLS(t, addr, client)
		writeRaw(t, c, rawRequest("POST", "/v1/stream", nil, "{}"))
		resp, body := readResp(t, br, "POST")
		if resp.StatusCode != 200 || body != "data: one\n\ndata: two\n\ndata: [DONE]\n\n" {
			t.Fatalf("stream: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("pipelined during a slow answer", func(t *testing.T) {
		c, br := dialTLS(t, addr, client)
		slow := step{req: rawRequest("POST", "/v1/slow", nil, "first"), method: "POST", status: 200, uri: "/v1/slow", body: "first"}
		fast := step{req: rawRequest("POST", "/v1/fast", nil, "second"), method: "POST", status: 200, uri: "/v1/fast", body: "second"}
		writeRaw(t, c, slow.req)
		<-started
		// The watcher starts on a timer nothing outside can observe.
		time.Sleep(watchAfter + 200*time.Millisecond)
		writeRaw(t, c, fast.req)
		close(release)
		slow.check(t, br, backend.URL)
		fast.check(t, br, backend.URL)
	})
	t.Run("client hangs up mid-stream", func(t *testing.T) {
		c, br := dialTLS(t, addr, client)
		writeRaw(t, c, rawRequest("POST", "/v1/stream?hang", nil, "{}"))
		<-started
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "data: one\n" {
			t.Fatalf("first event: %q, %v", line, err)
		}
		_ = c.Close()
		select {
		case <-cancelled:
		case <-time.After(testWait):
			t.Fatal("the replica's request was not cancelled after the TLS client hung up")
		}
	})
}

// TestServerOverTLSFallbackAndLimits: over TLS, a connection the loop
// hands to net/http (HTTP/1.0) is still served, and the 413 for an
// oversize body arrives before the connection closes.
func TestServerOverTLSFallbackAndLimits(t *testing.T) {
	backend := newEchoBackend(t)
	s := &Server{Handler: newHandler(t, Options{MaxBodyBytes: 1 << 10}, "", backend.URL)}
	addr, client := startTLSLoop(t, s)

	c, br := dialTLS(t, addr, client)
	writeRaw(t, c, "GET /v1/models HTTP/1.0\r\nHost: gateway.test\r\n\r\n")
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || decodeEcho(t, body).URI != "/v1/models" {
		t.Fatalf("HTTP/1.0 over TLS: %d %q", resp.StatusCode, body)
	}
	if !usedFallback(s) {
		t.Error("HTTP/1.0 did not take the net/http path")
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("https://"+addr+"/v1/chat/completions", "application/json", bytes.NewReader(bytes.Repeat([]byte("a"), 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "request_too_large") {
		t.Fatalf("oversize body over TLS: %d %q", resp.StatusCode, b)
	}
}
