package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// ui holds the dashboard: one HTML page and its static assets. They carry
// no data; the page asks for the admin token and calls the admin API.
//
//go:embed ui
var ui embed.FS

// dashboardPrefix is where the page's assets are served.
const dashboardPrefix = "/ui/"

// contentTypes are the types of the files the dashboard ships, set here
// rather than read from the system's MIME tables, which vary.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// dashboardCSP allows the page its own files and calls to its own origin,
// nothing else: no inline script, no other host, no framing.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// isDashboardAsset reports whether r asks for the page or one of its
// static files, which are served without a token. Only clean paths count,
// so nothing routed elsewhere can pass for one.
func isDashboardAsset(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	if p != path.Clean(p) {
		return false
	}
	return p == "/" || (strings.HasPrefix(p, dashboardPrefix) && len(p) > len(dashboardPrefix))
}

// dashboardHandler serves the page at / and its files under /ui/, from the
// binary. It is mounted at "/" (a "GET /" pattern would conflict with the
// API's "/api/"), so it answers other methods with 405 and other paths
// with 404, in JSON like the rest of the admin API.
func dashboardHandler() http.Handler {
	assets := map[string]asset{}
	err := fs.WalkDir(ui, "ui", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := ui.ReadFile(name)
		if err != nil {
			return err
		}
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("dashboard file %s: no content type for %q", name, path.Ext(name))
		}
		sum := sha256.Sum256(b)
		assets["/"+name] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		// The files are compiled in: this is a build mistake, not a runtime
		// condition.
		panic(err)
	}
	assets["/"] = assets[dashboardPrefix+"index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: fmt.Sprintf("%s %s: the dashboard only answers GET", r.Method, r.URL.Path)})
			return
		}
		a, ok := assets[r.URL.Path]
		if !ok {
			writeError(w, &httpError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no admin endpoint or dashboard file %s %s", r.Method, r.URL.Path)})
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if a.ctype == contentTypes[".html"] {
			h.Set("Content-Security-Policy", dashboardCSP)
			h.Set("X-Frame-Options", "DENY")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
