package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestClientTimeoutIsNotUnreachable: a gateway that has not answered when
// the caller's deadline passes, or that closed the connection before its
// answer, is reported as such, not as unreachable (a regression: `cutover
// promote` cut off while a before_promote hook ran, or whose gateway was
// killed meanwhile, said "admin API unreachable", as if nothing could
// have happened); a refused connection still is.
func TestClientTimeoutIsNotUnreachable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	// A gateway that dies while it works on the call.
	dies := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer dies.Close()

	tests := []struct {
		name, url   string
		want, never string
	}{
		{"slow answer", srv.URL, "no answer before the timeout", "unreachable"},
		{"nothing listening", closed, "unreachable", "no answer before the timeout"},
		{"closed before the answer", dies.URL, "closed before an answer", "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			c := &Client{BaseURL: tt.url, Token: "t"}
			_, err := c.Promote(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.never) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// TestClientNotAnAdminAPI: a 200 that is not cutover's JSON (another
// server at that address) names the address to check (a regression: it
// said only "bad JSON answer: invalid character 'o'").
func TestClientNotAnAdminAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok GET /api/v1/status"))
	}))
	defer srv.Close()
	_, err := (&Client{BaseURL: srv.URL, Token: "t"}).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "admin address") {
		t.Fatalf("error %v, want one naming %s as maybe not the admin address", err, srv.URL)
	}
}
