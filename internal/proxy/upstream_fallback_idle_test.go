package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestUpstreamCloseIdleClosesFallbacks: CloseIdleConnections closes the
// idle connections of the Fallback too (https replicas). Regression: a
// reload that changed proxy.response_header_timeout dropped the old
// Upstream with its Fallback's kept-alive TLS connections still open to
// the replicas, until their 90s idle timeout.
func TestUpstreamCloseIdleClosesFallbacks(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	fb := srv.Client().Transport.(*http.Transport).Clone()
	fb.IdleConnTimeout = time.Hour
	u := &Upstream{Fallback: fb}
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := u.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the connection goes back to the Fallback's idle pool

	u.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the Fallback's idle connection is still open after CloseIdleConnections")
	}
}
