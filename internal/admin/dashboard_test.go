package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// stubCtrl answers every admin call with a fixed, empty value.
type stubCtrl struct{}

func (stubCtrl) Status() api.Status { return api.Status{Live: "blue", Revision: 1} }
func (stubCtrl) Promote(context.Context, string, api.PromoteRequest) (api.SwitchResult, error) {
	return api.SwitchResult{}, nil
}
func (stubCtrl) Rollback(context.Context, string, api.RollbackRequest) (api.SwitchResult, error) {
	return api.SwitchResult{}, nil
}
func (stubCtrl) History(context.Context, int) ([]api.Event, error) { return nil, nil }
func (stubCtrl) Deploy(context.Context, string, api.DeployRequest) (api.DeployResult, error) {
	return api.DeployResult{}, nil
}
func (stubCtrl) Deployments() []api.Deployment             { return nil }
func (stubCtrl) Deployment(string) (api.Deployment, error) { return api.Deployment{}, nil }
func (stubCtrl) Abort(context.Context, string, api.AbortRequest) (api.Deployment, error) {
	return api.Deployment{}, nil
}
func (stubCtrl) Retire(context.Context, string, api.RetireRequest) (api.Deployment, error) {
	return api.Deployment{}, nil
}

const stubToken = "s3cret"

func newStubServer(t *testing.T) *httptest.Server {
	t.Helper()
	s, err := New(stubCtrl{}, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, path, token string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// TestDashboardStaticFilesNeedNoToken: the page and its assets are served
// without a token, with their content types, and carry no data.
func TestDashboardStaticFilesNeedNoToken(t *testing.T) {
	srv := newStubServer(t)
	tests := []struct {
		name, method, path, ctype, contains string
	}{
		{"page", "GET", "/", "text/html; charset=utf-8", `<script src="/ui/app.js" defer></script>`},
		{"page HEAD", "HEAD", "/", "text/html; charset=utf-8", ""},
		{"script", "GET", "/ui/app.js", "text/javascript; charset=utf-8", "Authorization"},
		{"stylesheet", "GET", "/ui/app.css", "text/css; charset=utf-8", ":root"},
		{"icon", "GET", "/ui/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, srv, tt.method, tt.path, "")
			if a.status != http.StatusOK {
				t.Fatalf("%s %s: %d %s", tt.method, tt.path, a.status, a.body)
			}
			if got := a.header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if got := a.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if !strings.Contains(a.body, tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if strings.Contains(a.body, stubToken) {
				t.Error("a static file contains the token")
			}
		})
	}
	page := do(t, srv, "GET", "/", "")
	csp := page.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page CSP %q lacks %q", csp, want)
		}
	}
}

// TestDashboardPageReferencesShippedFiles: every /ui/ file the page links
// is in the binary, so the page works offline.
func TestDashboardPageReferencesShippedFiles(t *testing.T) {
	srv := newStubServer(t)
	page := do(t, srv, "GET", "/", "").body
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("page links %d files, want at least the script, stylesheet and icon", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if !strings.HasPrefix(ref, "/ui/") {
			t.Errorf("page links %q, outside the embedded files", ref)
			continue
		}
		if a := do(t, srv, "GET", ref, ""); a.status != http.StatusOK {
			t.Errorf("GET %s: %d", ref, a.status)
		}
	}
}

// TestDashboardLeavesAPIGuarded: skipping the token for the static files
// opens nothing else, and other paths answer like the API.
func TestDashboardLeavesAPIGuarded(t *testing.T) {
	s, err := New(stubCtrl{}, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, token string
		status                    int
	}{
		{"status without token", "GET", "/api/v1/status", "", http.StatusUnauthorized},
		{"promote without token", "POST", "/api/v1/promote", "", http.StatusUnauthorized},
		{"status with token", "GET", "/api/v1/status", stubToken, http.StatusOK},
		{"POST page without token", "POST", "/", "", http.StatusUnauthorized},
		{"other path without token", "GET", "/metricz", "", http.StatusUnauthorized},
		{"bare /ui/ without token", "GET", "/ui/", "", http.StatusUnauthorized},
		{"dot-dot path without token", "GET", "/ui/../api/v1/status", "", http.StatusUnauthorized},
		{"missing asset", "GET", "/ui/nope.js", "", http.StatusNotFound},
		{"other path with token", "GET", "/metricz", stubToken, http.StatusNotFound},
		{"POST page with token", "POST", "/", stubToken, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A recorder, not a client: the path is sent as written,
			// dot segments included.
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("%s %s: %d, want %d: %s", tt.method, tt.path, rec.Code, tt.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); tt.status != http.StatusOK && ct != "application/json" {
				t.Errorf("error answer has Content-Type %q, want application/json", ct)
			}
		})
	}
}

// TestDashboardRevalidates: assets carry an ETag, so a browser revalidates
// instead of downloading the page again.
func TestDashboardRevalidates(t *testing.T) {
	srv := newStubServer(t)
	first := do(t, srv, "GET", "/ui/app.js", "")
	etag := first.header.Get("ETag")
	if etag == "" || first.header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, first.header.Get("Cache-Control"))
	}
	if a := do(t, srv, "GET", "/ui/app.js", "", "If-None-Match", etag); a.status != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: %d, want 304", a.status)
	}
}

// TestAdminTokenSchemeCaseInsensitive: the Bearer scheme is matched
// without regard to case (RFC 9110 section 11.1), as the traffic
// listener's client keys match it (a regression: "bearer TOKEN" was 401
// on the admin API only); the token itself is exact.
func TestAdminTokenSchemeCaseInsensitive(t *testing.T) {
	srv := newStubServer(t)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"Bearer " + stubToken, http.StatusOK},
		{"bearer " + stubToken, http.StatusOK},
		{"BEARER " + stubToken, http.StatusOK},
		{"Bearer   " + stubToken + " ", http.StatusOK},
		{"Bearer " + strings.ToUpper(stubToken), http.StatusUnauthorized},
		{"Basic " + stubToken, http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{stubToken, http.StatusUnauthorized},
	} {
		if got := do(t, srv, http.MethodGet, "/api/v1/status", "", "Authorization", tc.auth); got.status != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, got.status, tc.want)
		}
	}
}
