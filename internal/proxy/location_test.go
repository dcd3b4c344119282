package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReplicaLocation: a redirect that points into the replica (its
// scheme, host and path prefix, as a replica builds it from the Host the
// gateway sent) reaches the client relative to the gateway, as nginx's
// proxy_redirect default gives it; any other Location stays (a
// regression: FastAPI's slash redirect sent clients to the replica's
// address, past the gateway, its keys and its pool switch).
func TestReplicaLocation(t *testing.T) {
	var base string // the replica's URL, with the path prefix the pool names
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/pfx/v1/models/": // FastAPI's redirect_slashes, with the Host it was sent
			w.Header().Set("Location", "http://"+r.Host+"/pfx/v1/models?x=1")
		case "/pfx/v1/bare":
			w.Header().Set("Location", "HTTP://"+r.Host+"/pfx")
		case "/pfx/v1/elsewhere":
			w.Header().Set("Location", "https://example.com/pfx/v1/models")
		case "/pfx/v1/longer-port":
			w.Header().Set("Location", "http://"+r.Host+"1/pfx/v1")
		case "/pfx/v1/longer-path":
			w.Header().Set("Location", "http://"+r.Host+"/pfxx/v1")
		case "/pfx/v1/path-case": // the path prefix is not the replica's
			w.Header().Set("Location", "http://"+r.Host+"/PFX/v1")
		case "/pfx/v1/relative":
			w.Header().Set("Location", "/pfx/v1/models")
		}
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer backend.Close()
	base = backend.URL + "/pfx"
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, fe := range frontends {
		h := newHandler(t, Options{}, "", base)
		addr := fe.start(t, h)
		for _, tc := range []struct{ path, want string }{
			{"/v1/models/", "/v1/models?x=1"},
			{"/v1/bare", "/"},
			{"/v1/elsewhere", "https://example.com/pfx/v1/models"},
			{"/v1/longer-port", backend.URL + "1/pfx/v1"},
			{"/v1/longer-path", backend.URL + "/pfxx/v1"},
			{"/v1/relative", "/pfx/v1/models"},
			{"/v1/path-case", backend.URL + "/PFX/v1"},
		} {
			t.Run(fe.name+tc.path, func(t *testing.T) {
				resp, err := noFollow.Get("http://" + addr + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Values("Location"); resp.StatusCode != http.StatusTemporaryRedirect || len(got) != 1 || got[0] != tc.want {
					t.Fatalf("status %d, Location %q, want %q", resp.StatusCode, got, tc.want)
				}
			})
		}
	}
}
