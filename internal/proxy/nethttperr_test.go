package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestServerFallbackErrorShape: a request net/http cannot read, on a
// connection the loop handed to it (after a chunked request) or one
// net/http serves from the start (proxy.client net/http), is answered in
// the gateway's error shape, as the loop answers it. Regression: net/http's
// plain text "400 Bad Request" reached the client.
func TestServerFallbackErrorShape(t *testing.T) {
	backend := newEchoBackend(t)
	chunked := "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name  string
		opts  Options
		first string // sent and answered first, "" for none
	}{
		{"after a hand-off", Options{}, chunked},
		{"proxy.client net/http", Options{Transport: http.DefaultTransport}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Handler: newHandler(t, tc.opts, "", backend.URL)}
			c, br := dialRaw(t, startServer(t, s))
			if tc.first != "" {
				writeRaw(t, c, tc.first)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("first request: %v %v", resp, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			writeRaw(t, c, "GET /v1/models HTTP/1.1\r\n\r\n") // no Host
			_ = c.SetReadDeadline(time.Now().Add(testWait))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("answer %d %v %q, want 400 in JSON", resp.StatusCode, resp.Header, body)
			}
			checkAPIError(t, string(body), "bad_request")
			if want := errMalformedHead(http.StatusBadRequest, "missing required Host header").appendJSON(nil); string(body) != string(want) {
				t.Errorf("body %q, want the loop's own %q", body, want)
			}
			expectClosed(t, c, br)
			if !usedFallback(s) {
				t.Error("the net/http fallback was never used")
			}
		})
	}
}
