package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
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
// the key index (noKey when auth is off or the request needs none) or the
// 401 to answer. /health stays open for load balancers' checks, and
// OPTIONS for browsers' CORS preflights, which carry no credentials (as
// vLLM's own --api-key check lets them through to its CORS handler); the
// replica answers them, and no completion is ever made by one.
func (h *Handler) authenticate(method, path, authorization string) (int, *apiError) {
	a := h.opts.ClientAuth
	if a == nil || path == "/health" || path == "/ping" || method == http.MethodOptions {
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
// model_name (which the gateway fills in). bm is the body's shared scan.
func (h *Handler) allowModel(k int, t *route.Table, body []byte, bm *bodyModel) *apiError {
	if k == noKey || len(body) == 0 {
		return nil
	}
	model := t.ModelName
	if f, err := bm.scan(body); err == nil && f.found && f.isString {
		model = f.model()
	} else if err != nil && bm.form.found {
		model = bm.formValue(body)
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
// client-facing model_name, for pool e) as key k may see it: only the
// models k may use, an empty list when none. A ClientAuth with a
// May(i, model) method is asked through it, so that listing counts no
// refusal.
func (h *Handler) modelsForKey(k int, e *route.Entry, path string, a localAnswer) localAnswer {
	if k == noKey || a.err != nil || a.body == nil {
		return a
	}
	may := func(id string) bool { return h.may(k, id) }
	switch {
	case path == "/v1/models":
		a.body = e.ModelsBody(may)
	case strings.HasPrefix(path, modelPathPrefix):
		a = modelAnswer(e, path, may)
	}
	return a
}

// may reports whether key k may use model, counting no refusal when the
// ClientAuth can say so (a May method).
func (h *Handler) may(k int, model string) bool {
	if m, ok := h.opts.ClientAuth.(interface{ May(int, string) bool }); ok {
		return m.May(k, model)
	}
	return h.opts.ClientAuth.Allows(k, model)
}

// maxModelsBody bounds a replica's GET /v1/models answer read by
// replicaModelsForKey.
const maxModelsBody = 4 << 20

// replicaModelsForKey answers GET /v1/models for key k when k is limited
// to some models and a replica answers it (no model_name): the gateway
// asks a healthy replica of e itself and keeps only the data entries whose
// id k may use. ok false means the request is not such a one. A replica's
// answer other than 200, or one without a data member, is passed on as it
// is.
func (h *Handler) replicaModelsForKey(ctx context.Context, k int, e *route.Entry, method, path string) (a localAnswer, ok bool) {
	if k == noKey || method != http.MethodGet || path != "/v1/models" || h.may(k, "") {
		return localAnswer{}, false
	}
	return h.replicaModels(ctx, k, e)
}

// replicaModels is replicaModelsForKey's answer for a key it concerns.
// Apart, because its deferred calls would cost every request a deferred
// call record (more returns times defers than the compiler open-codes).
func (h *Handler) replicaModels(ctx context.Context, k int, e *route.Entry) (a localAnswer, ok bool) {
	var rep *pool.Replica
	for _, r := range e.Pool.Replicas {
		if r.Healthy() {
			rep = r
			break
		}
	}
	if rep == nil {
		return localAnswer{err: errNoHealthyReplica(e.Pool.Name)}, true
	}
	timeout := h.opts.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := *rep.URL
	u.Path = rep.URL.Path + "/v1/models"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return localAnswer{err: errUnreachable("could not be asked (" + err.Error() + ")")}, true
	}
	h.credentials(rep).apply(req.Header)
	resp, err := h.rt.RoundTrip(req)
	if err != nil {
		return localAnswer{err: errUnreachable("did not answer GET /v1/models")}, true
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxModelsBody))
	if err != nil {
		return localAnswer{err: errUnreachable("broke off its GET /v1/models answer")}, true
	}
	if resp.StatusCode != http.StatusOK {
		return localAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: body}, true
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return localAnswer{err: errUnreachable("answered GET /v1/models with no model list")}, true
	}
	raw, listed := doc["data"]
	if !listed {
		// No model list to filter: passed on as it is.
		return localAnswer{status: http.StatusOK, contentType: resp.Header.Get("Content-Type"), body: body}, true
	}
	var data []json.RawMessage
	if json.Unmarshal(raw, &data) != nil {
		return localAnswer{err: errUnreachable("answered GET /v1/models with no model list")}, true
	}
	kept := make([]json.RawMessage, 0, len(data))
	for _, m := range data {
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(m, &id) == nil && id.ID != "" && h.may(k, id.ID) {
			kept = append(kept, m)
		}
	}
	doc["data"], _ = json.Marshal(kept)
	out, err := json.Marshal(doc)
	if err != nil {
		return localAnswer{err: errUnreachable("answered GET /v1/models with no model list")}, true
	}
	return localAnswer{status: http.StatusOK, contentType: "application/json", body: out}, true
}

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
	return sc.field(name)
}

// field is the value of the request's first header line name (any
// case), "" when absent.
func (sc *srvConn) field(name string) string {
	for _, f := range sc.fields {
		if equalFold(sc.head[f.ns:f.ne], name) {
			return string(sc.head[f.vs:f.ve])
		}
	}
	return ""
}
