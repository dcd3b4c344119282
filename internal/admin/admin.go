// Package admin holds the admin HTTP API: bearer-token auth, JSON handlers
// that return (value, error), and one place that maps errors to statuses.
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/auth"
	"github.com/cutover-dev/cutover/internal/errconn"
	"github.com/cutover-dev/cutover/internal/rollout"
)

// Controller is the control plane as the admin API sees it.
type Controller interface {
	Status() api.Status
	Promote(ctx context.Context, actor string, req api.PromoteRequest) (api.SwitchResult, error)
	Rollback(ctx context.Context, actor string, req api.RollbackRequest) (api.SwitchResult, error)
	History(ctx context.Context, limit int) ([]api.Event, error)
	Deploy(ctx context.Context, actor string, req api.DeployRequest) (api.DeployResult, error)
	Deployments() []api.Deployment
	Deployment(id string) (api.Deployment, error)
	Abort(ctx context.Context, actor string, req api.AbortRequest) (api.Deployment, error)
	Retire(ctx context.Context, actor string, req api.RetireRequest) (api.Deployment, error)
}

// Server is the admin API handler.
type Server struct {
	ctrl Controller
	// tokens are the admin token and the read-only one; SetTokens swaps
	// them while serving (a configuration reload).
	tokens atomic.Pointer[tokens]
	log    *slog.Logger
	mux    *http.ServeMux
	// bodyTimeout bounds reading a request body (readTimeout; tests
	// shorten it).
	bodyTimeout time.Duration
}

// New returns the admin API for ctrl, guarded by token (must not be empty).
func New(ctrl Controller, token string, log *slog.Logger) (*Server, error) {
	if token == "" {
		return nil, errors.New("admin API needs a token")
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{ctrl: ctrl, log: log, mux: http.NewServeMux(), bodyTimeout: readTimeout}
	s.tokens.Store(&tokens{full: []byte(token)})
	s.mux.HandleFunc("GET /api/v1/status", s.wrap(func(r *http.Request) (any, error) { return ctrl.Status(), nil }))
	s.mux.HandleFunc("POST /api/v1/promote", s.wrap(withBody(ctrl.Promote)))
	s.mux.HandleFunc("POST /api/v1/rollback", s.wrap(withBody(ctrl.Rollback)))
	s.mux.HandleFunc("GET /api/v1/history", s.wrap(s.history))
	s.mux.HandleFunc("POST /api/v1/deployments", s.wrapStatus(http.StatusCreated, s.deploy))
	s.mux.HandleFunc("GET /api/v1/deployments", s.wrap(func(r *http.Request) (any, error) {
		return api.Deployments{Deployments: ctrl.Deployments()}, nil
	}))
	s.mux.HandleFunc("GET /api/v1/deployments/{id}", s.wrap(func(r *http.Request) (any, error) { return ctrl.Deployment(r.PathValue("id")) }))
	s.mux.HandleFunc("POST /api/v1/abort", s.wrap(withBody(ctrl.Abort)))
	s.mux.HandleFunc("POST /api/v1/retire", s.wrap(withBody(ctrl.Retire)))
	s.mux.HandleFunc("/api/", s.wrap(func(r *http.Request) (any, error) {
		if allow := s.allowed(r); len(allow) > 0 {
			return nil, &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
				msg: fmt.Sprintf("%s %s: use %s", r.Method, r.URL.EscapedPath(), strings.Join(allow, " or ")), allow: allow}
		}
		return nil, &httpError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no admin endpoint %s %s", r.Method, r.URL.EscapedPath())}
	}))
	s.mux.Handle("/", dashboardHandler())
	return s, nil
}

// allowed lists the methods that r's path has an endpoint for.
func (s *Server) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/api/" && pattern != "/" && pattern != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead) // the mux serves HEAD with GET's handler
			}
		}
	}
	return allow
}

// ServeHTTP checks the token (the dashboard's static files need none), then
// routes. Every answer but those files is JSON.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isDashboardAsset(r) {
		s.mux.ServeHTTP(w, r)
		return
	}
	switch s.access(r) {
	case accessNone:
		w.Header().Set("WWW-Authenticate", `Bearer realm="cutover"`)
		if r.ContentLength != 0 {
			// The body is not read: net/http would otherwise read (and
			// wait for) it before the answer goes out.
			w.Header().Set("Connection", "close")
		}
		writeError(w, &httpError{status: http.StatusUnauthorized, code: "unauthorized", msg: "missing or wrong admin token: send Authorization: Bearer <token> (CUTOVER_ADMIN_TOKEN or admin.token_file)"})
		return
	case accessRead:
		if !readOnly(r) {
			writeError(w, &httpError{status: http.StatusForbidden, code: "read_only_token",
				msg: fmt.Sprintf("%s %s needs the admin token: the read-only token (admin.read_token_file) may only read status, history, deployments, metrics and the dashboard", r.Method, r.URL.Path)})
			return
		}
	}
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch) &&
		len(r.Header["Content-Length"]) == 0 {
		// net/http reads an HTTP/1.0 request without Content-Length as
		// bodiless, and ignores a Transfer-Encoding in it: a body sent so
		// would go unread, with the guards it holds (expected_revision).
		w.Header().Set("Connection", "close")
		writeError(w, &httpError{status: http.StatusLengthRequired, code: "length_required",
			msg: fmt.Sprintf("%s %s over HTTP/1.0 needs Content-Length (0 without a body): net/http does not read a body framed otherwise (RFC 1945 section 7.2.2)", r.Method, r.URL.EscapedPath())})
		return
	}
	if he := readBody(w, r, s.bodyTimeout); he != nil {
		w.Header().Set("Connection", "close") // the rest of the body is not read
		writeError(w, he)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Access levels of an admin request's token.
const (
	accessNone = iota
	accessRead
	accessFull
)

// access compares the request's bearer token with the admin token and the
// read-only one, each in constant time, both always.
func (s *Server) access(r *http.Request) int {
	tok, ok := auth.CutBearer(r.Header.Get("Authorization"))
	if !ok {
		return accessNone
	}
	t := []byte(tok)
	tk := s.tokens.Load()
	full := subtle.ConstantTimeCompare(t, tk.full) == 1
	read := len(tk.read) > 0 && subtle.ConstantTimeCompare(t, tk.read) == 1
	switch {
	case full:
		return accessFull
	case read:
		return accessRead
	}
	return accessNone
}

// readOnly reports a request the read-only token may make: GET or HEAD,
// except the profiler (whose profiles may hold request contents).
func readOnly(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && !strings.HasPrefix(r.URL.Path, "/debug/")
}

// SetReadToken adds a read-only token (admin.read_token_file), for
// Prometheus scrapes, status and the dashboard's view: it is refused
// (403) for every write. It must differ from the admin token.
func (s *Server) SetReadToken(token string) error {
	if token == "" {
		return errors.New("read-only token is empty")
	}
	return s.SetTokens(string(s.tokens.Load().full), token)
}

// SetTokens replaces the admin token and the read-only one (empty: none)
// at once, while serving: requests after it need the new ones. The two
// must differ.
func (s *Server) SetTokens(token, readToken string) error {
	if token == "" {
		return errors.New("admin API needs a token")
	}
	if readToken != "" && subtle.ConstantTimeCompare([]byte(readToken), []byte(token)) == 1 {
		return errors.New("read-only token is the admin token; give it its own")
	}
	t := &tokens{full: []byte(token)}
	if readToken != "" {
		t.read = []byte(readToken)
	}
	s.tokens.Store(t)
	return nil
}

// tokens are the bearer tokens the admin API accepts.
type tokens struct {
	full []byte // every endpoint
	read []byte // reads only; nil: no read-only token
}

// actor names the caller for the history: X-Cutover-Actor (at most 100
// bytes, valid UTF-8), else "api".
func actor(r *http.Request) string {
	a := strings.TrimSpace(r.Header.Get("X-Cutover-Actor"))
	if len(a) > 100 {
		a = a[:100]
	}
	// The history keeps valid UTF-8: no byte that is not part of a whole
	// character, such as one the cut above left of the last.
	if a = strings.ToValidUTF8(a, ""); a == "" {
		return "api"
	}
	return a
}

func (s *Server) history(r *http.Request) (any, error) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, &httpError{status: http.StatusBadRequest, code: "bad_limit", msg: fmt.Sprintf("limit must be a non-negative integer, got %q", v)}
		}
		limit = n
	}
	evs, err := s.ctrl.History(r.Context(), limit)
	if err != nil {
		return nil, err
	}
	return api.History{Events: evs}, nil
}

func (s *Server) deploy(r *http.Request) (any, error) {
	var req api.DeployRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	return s.ctrl.Deploy(r.Context(), actor(r), req)
}

// withBody adapts a controller action to a handler: the request's JSON
// body (empty: the zero value) and its actor are the action's arguments.
func withBody[Req, Res any](action func(ctx context.Context, actor string, req Req) (Res, error)) func(*http.Request) (any, error) {
	return func(r *http.Request) (any, error) {
		var req Req
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		res, err := action(r.Context(), actor(r), req)
		return res, err
	}
}

// decodeBody reads a JSON body into v; an empty body leaves v as is.
// Anything but one object (null, an array, a number...), unknown fields,
// field names in another case, a field given twice, text that is not
// UTF-8 or has half a surrogate pair, and trailing data are errors.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return &httpError{status: http.StatusBadRequest, code: "bad_json", msg: "request body: " + err.Error()}
	}
	if raw[0] != '{' {
		return &httpError{status: http.StatusBadRequest, code: "bad_json", msg: fmt.Sprintf("request body: want a JSON object, got %.20s", raw)}
	}
	if err := checkStrict(raw, reflect.TypeOf(v)); err != nil {
		return &httpError{status: http.StatusBadRequest, code: "bad_json", msg: "request body: " + err.Error()}
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		return &httpError{status: http.StatusBadRequest, code: "bad_json", msg: "request body: " + err.Error()}
	}
	// dec.More is false before a stray ] or }: only the end of the body
	// will do.
	if _, err := dec.Token(); err != io.EOF {
		return &httpError{status: http.StatusBadRequest, code: "bad_json", msg: "request body: data after the JSON value"}
	}
	return nil
}

type httpError struct {
	status int
	code   string
	msg    string
	allow  []string // the Allow header of a 405
}

func (e *httpError) Error() string { return e.msg }

// wrap turns a (value, error) handler into an http.HandlerFunc: the value
// as JSON with 200, or the error mapped by errorFor.
func (s *Server) wrap(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return s.wrapStatus(http.StatusOK, fn)
}

// wrapStatus is wrap with another success status.
func (s *Server) wrapStatus(status int, fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			he := errorFor(err)
			if he.status >= 500 {
				s.log.Error("admin API call failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
			}
			writeError(w, he)
			return
		}
		// Encoded before the status goes out: a value json cannot write
		// (a NaN or an infinity) is a 500 with a message, not a 200 with
		// an empty body.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			s.log.Error("admin API answer cannot be encoded", "method", r.Method, "path", r.URL.Path, "error", err.Error())
			writeError(w, &httpError{status: http.StatusInternalServerError, code: "internal", msg: fmt.Sprintf("%s %s: the answer cannot be encoded as JSON: %v", r.Method, r.URL.Path, err)})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(buf.Bytes())
	}
}

// errorFor is the one place errors become statuses: a controller refusal
// is 409, a bad request 4xx as given, anything else 500.
func errorFor(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	var ref *rollout.Refusal
	if errors.As(err, &ref) {
		status := ref.Status
		if status == 0 {
			status = http.StatusConflict
		}
		return &httpError{status: status, code: ref.Code, msg: ref.Reason}
	}
	if errors.Is(err, context.Canceled) {
		return &httpError{status: 499, code: "canceled", msg: "request canceled"}
	}
	return &httpError{status: http.StatusInternalServerError, code: "internal", msg: err.Error()}
}

func writeError(w http.ResponseWriter, e *httpError) {
	w.Header().Set("Content-Type", "application/json")
	if len(e.allow) > 0 {
		w.Header().Set("Allow", strings.Join(e.allow, ", "))
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(e.body())
}

// body is e as the API's error shape, with a newline.
func (e *httpError) body() []byte {
	typ := "invalid_request_error"
	if e.status >= 500 {
		typ = "server_error"
	}
	b, _ := json.Marshal(api.ErrorResponse{Error: api.ErrorBody{Message: e.msg, Type: typ, Code: e.code}}) // plain strings
	return append(b, '\n')
}

// MalformedRequestBody is the admin listener's errconn.Body: the body of
// its answer to a request head net/http could not read, in the shape of
// its other errors.
func MalformedRequestBody(status int, why string) []byte {
	if why == "" {
		why = http.StatusText(status)
	}
	return (&httpError{status: status, code: errconn.Code(status), msg: "malformed request: " + why}).body()
}

// Handle adds a route behind the same token check as the API, such as
// GET /metrics.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// HandleJSON adds a route behind the same token check whose handler
// returns a value to send as JSON, or an error mapped like the API's own,
// such as GET /api/v1/traffic.
func (s *Server) HandleJSON(pattern string, fn func(*http.Request) (any, error)) {
	s.mux.HandleFunc(pattern, s.wrap(fn))
}
