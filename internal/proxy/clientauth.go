package proxy

import (
	"net/http"
	"time"

	"github.com/cutover-dev/cutover/internal/route"
)

// ClientAuth checks the keys clients present on the traffic listener
// (auth.Keys). Keys are known by an index; only their ids are ever shown.
type ClientAuth interface {
	// Authenticate returns the index of the key in an Authorization
	// header value ("" when absent), or -1.
	Authenticate(authorization string) int
	// ID is key i's id, for logs and metrics.
	ID(i int) string
	// Allows reports whether key i may use model ("" when the request
	// names none).
	Allows(i int, model string) bool
}

// noKey is the key index of a request when client auth is off.
const noKey = -1

// authenticate checks a request's key when client auth is on: it returns
// the key index (noKey when auth is off or the path needs none) or the 401
// to answer. /health stays open for load balancers' checks.
func (h *Handler) authenticate(path, authorization string) (int, *apiError) {
	a := h.opts.ClientAuth
	if a == nil || path == "/health" {
		return noKey, nil
	}
	if k := a.Authenticate(authorization); k >= 0 {
		return k, nil
	}
	msg := "Incorrect API key provided. Send Authorization: Bearer <key>."
	if authorization == "" {
		msg = "You didn't provide an API key. Send Authorization: Bearer <key>."
	}
	return noKey, &apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key", msg: msg}
}

// allowModel refuses (403) a request body naming a model key k may not
// use. The model is the one the client named, else the table's
// model_name (which the gateway fills in).
func (h *Handler) allowModel(k int, t *route.Table, method string, body []byte) *apiError {
	if k == noKey || method != http.MethodPost || len(body) == 0 {
		return nil
	}
	model := t.ModelName
	if f, err := scanModel(body); err == nil && f.found && f.isString {
		model = f.value
	}
	if h.opts.ClientAuth.Allows(k, model) {
		return nil
	}
	msg := "this API key (" + h.opts.ClientAuth.ID(k) + ") may not use model `" + model + "`"
	if model == "" {
		msg = "this API key (" + h.opts.ClientAuth.ID(k) + ") is limited to some models; name one in the request's model field"
	}
	return &apiError{status: http.StatusForbidden, typ: "permission_error", code: "model_not_allowed", msg: msg}
}

// logRefused writes the access-log line of a request client auth refused
// (aerr, a 401 or 403), with key k's id when known (never the key). It is
// not an observation: a refused request says nothing of the pool's health.
func (h *Handler) logRefused(method, path string, e *route.Entry, start time.Time, k int, aerr *apiError) {
	if !h.opts.AccessLog {
		return
	}
	o := Observation{Pool: e.Pool.Name, Method: method, Path: path, Status: aerr.status, Error: aerr.code,
		Start: start, Duration: time.Since(start), Key: h.keyID(k)}
	logAccess(h.log, &o, "")
}

// modelsForKey is the gateway's own answer a to GET /v1/models (the
// client-facing model_name) as key k may see it: an empty list when k is
// limited to models that do not include that name. A ClientAuth with a
// May(i, model) method is asked through it, so that listing counts no
// refusal.
func (h *Handler) modelsForKey(k int, t *route.Table, path string, a localAnswer) localAnswer {
	if k == noKey || a.err != nil || path != "/v1/models" || a.body == nil {
		return a
	}
	allows := h.opts.ClientAuth.Allows
	if m, ok := h.opts.ClientAuth.(interface{ May(int, string) bool }); ok {
		allows = m.May
	}
	if !allows(k, t.ModelName) {
		a.body = noModels
	}
	return a
}

var noModels = []byte(`{"object":"list","data":[]}`)

// keyID is key k's id for the observation, "" without one.
func (h *Handler) keyID(k int) string {
	if k == noKey {
		return ""
	}
	return h.opts.ClientAuth.ID(k)
}

// headerValue is the first value of header name (canonical form) in h,
// "" when absent.
func headerValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerValue is the value of the request's first header line name
// (any case), "" when absent. Only called with client auth on.
func (sc *srvConn) headerValue(name string) string {
	if sc.h.opts.ClientAuth == nil {
		return ""
	}
	for _, f := range sc.fields {
		if equalFold(sc.head[f.ns:f.ne], name) {
			return string(sc.head[f.vs:f.ve])
		}
	}
	return ""
}
