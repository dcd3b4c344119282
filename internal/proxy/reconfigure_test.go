package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestReconfigure: new options count for every request that arrives
// after Reconfigure, on a kept-alive connection too, while a stream that
// began before keeps the options it started with (no whole-request
// timeout) and ends whole.
func TestReconfigure(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/stream" {
					echoHandler(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				fmt.Fprint(w, "data: [DONE]\n\n")
			}))
			closeAtEnd(t, srv)
			h := newHandler(t, Options{}, "", srv.URL)
			addr := fe.start(t, h)

			stream, err := http.Post("http://"+addr+"/v1/stream", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Body.Close()
			first := make([]byte, len("data: first\n\n"))
			if _, err := io.ReadFull(stream.Body, first); err != nil {
				t.Fatalf("first event: %v", err)
			}

			c, br := dialRaw(t, addr)
			body := strings.Repeat("x", 64)
			writeRaw(t, c, rawRequest("POST", "/v1/echo", nil, body))
			if resp, b := readResp(t, br, "POST"); resp.StatusCode != http.StatusOK {
				t.Fatalf("before: status %d %s", resp.StatusCode, b)
			}

			if err := h.Reconfigure(Options{Logger: quiet, MaxBodyBytes: 16, Timeout: time.Nanosecond}); err != nil {
				t.Fatal(err)
			}
			writeRaw(t, c, rawRequest("POST", "/v1/echo", nil, body)) // the same connection
			resp, b := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("after: status %d %s, want 413 from the new max_body_bytes", resp.StatusCode, b)
			}
			checkAPIError(t, b, "request_too_large")

			close(release)
			rest, err := io.ReadAll(stream.Body)
			if err != nil || !strings.Contains(string(rest), "[DONE]") {
				t.Fatalf("the stream begun before Reconfigure: %q, %v; want it whole", rest, err)
			}
		})
	}
}

// TestReconfigureTransportKind: a Handler served by the Server's loop
// (an *Upstream) cannot be moved to another transport kind; the refusal
// changes nothing.
func TestReconfigureTransportKind(t *testing.T) {
	h := newHandler(t, Options{}, "", newEchoBackend(t).URL)
	if err := h.Reconfigure(Options{Transport: NewTransport(0, 0)}); !errors.Is(err, errTransportKind) {
		t.Fatalf("Reconfigure to an http.Transport: %v, want errTransportKind", err)
	}
	if _, ok := h.Transport().(*Upstream); !ok {
		t.Errorf("transport now %T", h.Transport())
	}
	if err := h.Reconfigure(Options{Transport: &Upstream{}}); err != nil {
		t.Errorf("Reconfigure to another Upstream: %v", err)
	}
}

// TestReconfigureClientWriteTimeoutOff: a reload that turns the client
// write timeout off (0) clears the deadline a kept-alive connection's
// earlier answer armed, so the next answer on it is not cut once that old
// deadline has passed.
func TestReconfigureClientWriteTimeoutOff(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(echoHandler))
			closeAtEnd(t, srv)
			const old = 100 * time.Millisecond
			h := newHandler(t, Options{ClientWriteTimeout: old}, "", srv.URL)
			addr := fe.start(t, h)
			c, br := dialRaw(t, addr)
			body := strings.Repeat("x", 64)
			writeRaw(t, c, rawRequest("POST", "/v1/echo", nil, body))
			if resp, b := readResp(t, br, "POST"); resp.StatusCode != http.StatusOK {
				t.Fatalf("before: status %d %s", resp.StatusCode, b)
			}
			if err := h.Reconfigure(Options{Logger: quiet}); err != nil {
				t.Fatal(err)
			}
			// The scenario itself, not a synchronisation: the deadline the
			// first answer armed passes.
			time.Sleep(2 * old)
			writeRaw(t, c, rawRequest("POST", "/v1/echo", nil, body)) // the same connection
			if resp, b := readResp(t, br, "POST"); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), body) {
				t.Fatalf("after: status %d %q, want 200 with the echo", resp.StatusCode, b)
			}
		})
	}
}
