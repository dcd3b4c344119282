// Package proxy holds the data plane: the HTTP handler that sends each
// request to one replica of the live pool and relays the answer, streams
// included, without buffering.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// Options configures a Handler. The zero value of each field is usable.
type Options struct {
	// Transport sends requests to replicas. Nil means NewTransport(0, 0).
	Transport http.RoundTripper
	// Picker chooses a replica within the pool. Nil means
	// pool.LeastOutstanding.
	Picker pool.Picker
	// MaxBodyBytes limits request bodies (413 above). Zero or negative
	// means 32 MiB.
	MaxBodyBytes int64
	// IdleTimeout bounds the silence between two reads of a response body.
	// Zero means no limit.
	IdleTimeout time.Duration
	// Timeout bounds a whole request, streams included. Zero means none.
	Timeout time.Duration
	// Logger receives access-log lines (when AccessLog) and passive
	// ejections. Nil means slog.Default().
	Logger *slog.Logger
	// AccessLog writes one line per request.
	AccessLog bool
	// Observer receives every request's observation (metrics, validation).
	// Nil means none.
	Observer Observer
	// Mirror receives copies of sampled live requests for shadow traffic.
	// Nil means none.
	Mirror Mirror
	// ForwardClientAuthorization sends the client's Authorization header
	// on to replicas that have no key of their own
	// (pool.Replica.Authorization). False (the default) drops it: a
	// replica with a key always gets its own, never the client's.
	ForwardClientAuthorization bool
	// ClientAuth, when set, requires every client request but /health to
	// carry a valid key (401 otherwise) and limits each key to its models
	// (403). Nil means no client auth.
	ClientAuth ClientAuth
	// BodyTimeout bounds reading a request body, from the end of its head,
	// on every serving path (408 request_timeout). Zero means 30s;
	// negative means none.
	BodyTimeout time.Duration
	// ClientWriteTimeout cuts a client that accepts no byte of an answer
	// for that long (it stopped reading), and the replica's request with
	// it. Zero means none.
	ClientWriteTimeout time.Duration
	// MaxBufferedBytes bounds the request body bytes held in memory by all
	// requests together; a request that would pass it gets 503 overloaded.
	// Zero means 512 MiB; negative means none.
	MaxBufferedBytes int64
	// Outlier receives every attempt's outcome and ejects failing
	// replicas (passive health). Nil means no passive ejection.
	Outlier *pool.Outlier
	// HideReplica leaves the X-Cutover-Replica header (the replica's
	// address) out of every answer. False: answers name their replica.
	HideReplica bool
	// PoolHeader (canonical form) names the request header that sends a
	// request to the pool it names, when the header PoolHeader+"-Token"
	// carries PoolHeaderToken; both headers are always stripped. Empty:
	// off, and the headers pass through like any other.
	PoolHeader, PoolHeaderToken string
	// Tracer starts a span per proxied request (see trace.go). Nil means
	// no tracing, at no cost.
	Tracer Tracer
}

// Handler is the gateway's data plane. It reads the routing table through
// an atomic pointer on every request and never blocks on the control plane.
//
// Its options change with Reconfigure (reconfigure.go): each change makes
// a new generation, a Handler sharing the table, the body budget and
// the current-generation pointer; a request is served by the generation
// current when it arrived, from its head to its end.
type Handler struct {
	opts   Options
	rt     http.RoundTripper
	up     *Upstream // rt when it is an *Upstream: the fast path
	picker pool.Picker
	// bodyPicker is picker when it is a pool.BodyPicker, else nil.
	bodyPicker pool.BodyPicker
	// waitPicker is picker when it is a pool.WaitPicker, else nil.
	waitPicker pool.WaitPicker
	log        *slog.Logger
	table      *atomic.Pointer[route.Table] // shared by every generation
	// slow caches the loop's slowPath verdict for the last table (this
	// generation's: it depends on opts.PoolHeader).
	slow atomic.Pointer[slowVerdict]
	// buffered counts the request body bytes held in memory, by every
	// generation together.
	buffered *bodyBudget
	// gen is the current generation, shared by every generation.
	gen *atomic.Pointer[Handler]
}

// New returns a Handler with no table: it answers 503 until Apply.
func New(opts Options) *Handler {
	h := newGeneration(opts, &atomic.Pointer[route.Table]{}, &bodyBudget{})
	h.gen = &atomic.Pointer[Handler]{}
	h.gen.Store(h)
	return h
}

// newGeneration is a Handler for opts, with the given table and budget;
// the caller sets gen.
func newGeneration(opts Options, table *atomic.Pointer[route.Table], budget *bodyBudget) *Handler {
	h := &Handler{opts: opts, rt: opts.Transport, picker: opts.Picker, log: opts.Logger, table: table, buffered: budget}
	if h.rt == nil {
		h.rt = NewTransport(0, 0)
	}
	h.up, _ = h.rt.(*Upstream)
	if h.picker == nil {
		h.picker = pool.LeastOutstanding{}
	}
	h.bodyPicker, _ = h.picker.(pool.BodyPicker)
	h.waitPicker, _ = h.picker.(pool.WaitPicker)
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.opts.MaxBodyBytes <= 0 {
		h.opts.MaxBodyBytes = 32 << 20
	}
	limit := h.opts.MaxBufferedBytes
	if limit == 0 {
		limit = defaultMaxBufferedBytes
	}
	h.buffered.max.Store(limit)
	return h
}

// NewTransport returns an http.Transport tuned for a few replicas carrying
// many concurrent long requests: a large idle pool per host, no
// compression negotiation of its own, responseHeaderTimeout (0: none) and
// dialTimeout bounding a new connection (0: 5s).
// It waits up to expectContinueTimeout for a replica's 100 Continue before
// sending a body the Handler marked "Expect: 100-continue" (see
// expectContinueAbove).
func NewTransport(responseHeaderTimeout, dialTimeout time.Duration) *http.Transport {
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: expectContinueTimeout,
		DisableCompression:    true,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}

// Apply makes t the routing table for every request that arrives from now
// on. Requests already in flight keep the table they started with.
func (h *Handler) Apply(t *route.Table) { h.table.Store(t) }

// Table returns the table in effect, or nil before the first Apply.
func (h *Handler) Table() *route.Table { return h.table.Load() }

// ServeHTTP sends r to the live pool (during a canary, to the pool the
// table's weights pick).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h = h.current()
	t := h.table.Load()
	if t == nil {
		errNotReady().write(w)
		return
	}
	e, kind := h.pickPool(t, r)
	h.servePool(w, r, t, e, kind)
}

// ServePool sends r to pool e of table t. The preview listener uses it to
// reach the candidate pool.
func (h *Handler) ServePool(w http.ResponseWriter, r *http.Request, t *route.Table, e *route.Entry) {
	h.current().servePool(w, r, t, e, pickFixed)
}

// servePool is ServePool; kind says how e was chosen (pickByBody: pick the
// pool again from the body once it is read, see rePick).
func (h *Handler) servePool(w http.ResponseWriter, r *http.Request, t *route.Table, e *route.Entry, kind pickKind) {
	start := time.Now()
	wdl := h.startWrites(w)
	w.Header()["X-Cutover-Pool"] = e.PoolHeader
	key, aerr := h.authenticate(r.Method, r.URL.Path, headerValue(r.Header, "Authorization"))
	if aerr != nil {
		h.logRefused(r.Method, r.URL.Path, e, start, key, aerr)
		aerr.write(w)
		return
	}
	if a, ok := answerLocally(r.Method, r.URL.Path, e); ok {
		a = h.modelsForKey(key, e, r.URL.Path, a)
		a.write(w)
		return
	}
	if a, ok := h.replicaModelsForKey(r.Context(), key, e, r.Method, r.URL.Path); ok {
		a.write(w)
		return
	}
	if aerr := loopCheck(hopsOf(r.Header)); aerr != nil {
		aerr.write(w)
		return
	}
	body, held, aerr := h.readBody(w, r)
	defer h.buffered.give(held)
	if aerr == nil && kind == pickByBody {
		e = rePick(t, e, body)
		w.Header()["X-Cutover-Pool"] = e.PoolHeader
	}
	var bm bodyModel // the body's scan, shared
	if aerr == nil && bm.readsForm(t, key, body) {
		aerr = bm.scanForm(body, r.Header.Get("Content-Type"))
	}
	if aerr == nil {
		if aerr = h.allowModel(key, t, body, &bm); aerr != nil {
			h.logRefused(r.Method, r.URL.Path, e, start, key, aerr)
			aerr.write(w)
			return
		}
	}
	if aerr == nil {
		named := e
		body, named, aerr = applyModelName(t, e, kind != pickFixed, body, &bm)
		if named != e {
			e = named
			w.Header()["X-Cutover-Pool"] = e.PoolHeader
		}
	}
	if aerr != nil {
		aerr.write(w)
		return
	}
	ex := exchangePool.Get().(*exchange)
	defer func() {
		*ex = exchange{}
		exchangePool.Put(ex)
	}()
	*ex = exchange{h: h, w: w, r: r, e: e, body: body, wdl: wdl}
	ex.obs = Observation{Pool: e.Pool.Name, Method: r.Method, Path: r.URL.Path, Start: start, Key: h.keyID(key)}
	if h.opts.Tracer != nil {
		ex.obs.trace = h.traceHTTP(r, start, t, e, body, &bm)
	}
	mirrored := h.wantMirror(r.Method, e, body)
	if mirrored && bm.deterministic(body) {
		ex.capture = getCapture() // its text will be compared
	}
	abort := ex.run()
	ex.obs.Duration = time.Since(start)
	h.finish(&ex.obs, e, r.URL.Path, body, mirrored, ex.capture)
	if abort {
		// Headers are out and the upstream broke: the only honest signal
		// left is to abort the connection, so the client sees a truncated
		// response, never a complete-looking one.
		panic(http.ErrAbortHandler)
	}
}

// localAnswer is an answer the gateway gives without a replica: err, or
// status with an optional body.
type localAnswer struct {
	status      int
	contentType string
	body        []byte
	err         *apiError
}

// inferencePaths are the routes outside /v1/ where vLLM serves clients
// (tokenizer, pooling and scoring models, SageMaker's /invocations) and
// which the gateway proxies as it does /v1/*. vLLM's other routes outside
// /v1/ are the operator's (/metrics, sleep mode, /load) and stay out of
// clients' reach, as do operatorPaths under /v1/; /health and /ping (its
// SageMaker twin) the gateway answers itself.
var inferencePaths = map[string]bool{
	"/tokenize": true, "/detokenize": true, "/version": true,
	"/pooling": true, "/classify": true, "/score": true,
	"/rerank": true, "/v2/rerank": true, "/invocations": true,
}

// operatorPaths are vLLM's routes under /v1/ that change a replica
// (runtime LoRA loading, with VLLM_ALLOW_RUNTIME_LORA_UPDATING): the
// operator's, sent to each replica directly, never a client's through the
// gateway (which would change one replica of the pool, and, since the
// gateway serves what its replicas list, open a model to every client).
var operatorPaths = map[string]bool{"/v1/load_lora_adapter": true, "/v1/unload_lora_adapter": true}

// answerLocally decides the requests the gateway answers itself: /health
// (and /ping) of the pool, paths outside /v1/ but inferencePaths (or
// leaving them through dot segments),
// and GET and HEAD /v1/models and /v1/models/{id} when the table names
// one model for clients (503, as /health, while the pool has no healthy
// replica). ok false
// means: send the request to a replica.
func answerLocally(method, path string, e *route.Entry) (a localAnswer, ok bool) {
	switch {
	case path == "/health" && (method == http.MethodGet || method == http.MethodHead),
		path == "/ping" && (method == http.MethodGet || method == http.MethodHead || method == http.MethodPost):
		if e.Pool.HealthyCount() == 0 {
			return localAnswer{err: errNoHealthyReplica(e.Pool.Name)}, true
		}
		return localAnswer{status: http.StatusOK}, true
	case strings.IndexByte(path, '#') >= 0:
		// A fragment is not part of a request target (RFC 9112 section
		// 3.2); uvicorn drops it, so "/v1/load_lora_adapter#x" would
		// reach a route the checks here did not see.
		return localAnswer{err: &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_request",
			msg: "the request target has a fragment (#): clients do not send one"}}, true
	case strings.HasSuffix(path, "_lora_adapter") && operatorPaths[path]:
		return localAnswer{err: &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "unknown_path",
			msg: fmt.Sprintf("%q changes a replica: it is the operator's, sent to each replica directly, not through cutover", path)}}, true
	case !strings.HasPrefix(path, "/v1/") && !inferencePaths[path] || hasDotSegment(path):
		return localAnswer{err: &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "unknown_path",
			msg: fmt.Sprintf("cutover proxies /v1/* and vLLM's inference routes only, not %q", path)}}, true
	case e.HasModelName() && path == "/v1/models" && (method == http.MethodGet || method == http.MethodHead):
		// As a replica's own list would: none when no replica can
		// serve (clients probe liveness with it as with /health).
		if e.Pool.HealthyCount() == 0 {
			return localAnswer{err: errNoHealthyReplica(e.Pool.Name)}, true
		}
		return localAnswer{status: http.StatusOK, contentType: "application/json", body: e.ModelsBody(nil)}, true
	case e.HasModelName() && strings.HasPrefix(path, modelPathPrefix) && (method == http.MethodGet || method == http.MethodHead):
		if e.Pool.HealthyCount() == 0 {
			return localAnswer{err: errNoHealthyReplica(e.Pool.Name)}, true
		}
		return modelAnswer(e, path, nil), true
	}
	return localAnswer{}, false
}

// modelPathPrefix starts OpenAI's "retrieve model" route,
// GET /v1/models/{id}.
const modelPathPrefix = "/v1/models/"

// modelAnswer is the gateway's answer to GET /v1/models/{id} with
// model_name set: the entry of its /v1/models list whose id is {id}
// (percent-decoded: SDKs encode a "/" in an id), those may allows; 404
// model_not_found otherwise, as the list does not name it.
func modelAnswer(e *route.Entry, path string, may func(string) bool) localAnswer {
	id := strings.TrimPrefix(path, modelPathPrefix)
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	if b, ok := e.ModelBody(id, may); ok {
		return localAnswer{status: http.StatusOK, contentType: "application/json", body: b}
	}
	return localAnswer{err: &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "model_not_found",
		msg: fmt.Sprintf("The model `%s` does not exist. This gateway serves `%s`.", id, e.ModelName())}}
}

func (a *localAnswer) write(w http.ResponseWriter) {
	if a.err != nil {
		a.err.write(w)
		return
	}
	if a.contentType != "" {
		w.Header()["Content-Type"] = []string{a.contentType}
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// applyModelName applies the table's model_name rule to a request body
// bound for pool e (see rewriteModel): it returns the body to send and
// the pool to send it to, or the 404 for a model name the gateway does
// not serve. bm is the body's shared scan. A name other than the
// client-facing one and e's model id passes as it is when e's replicas
// list it (a LoRA adapter). When drawn is set (the canary's weights chose
// e), a name that is the other pool's model id, or an adapter only the
// other pool serves, goes to that pool while it gets traffic: a client
// naming the version that answered it before (the answers' model) gets
// that version.
func applyModelName(t *route.Table, e *route.Entry, drawn bool, body []byte, bm *bodyModel) ([]byte, *route.Entry, *apiError) {
	if t.ModelName == "" || len(body) == 0 {
		return body, e, nil
	}
	nb, other, ok := bm.rewrite(body, t.ModelName, e.Pool.Model, e.ModelJSON)
	if ok {
		return nb, e, nil
	}
	if o := otherSharing(t, e, drawn, func(o *route.Entry) bool { return o.Pool.Model == other }); o != nil {
		return body, o, nil
	}
	if e.Pool.Lists(other) {
		return body, e, nil
	}
	if o := otherSharing(t, e, drawn, func(o *route.Entry) bool { return o.Pool.Lists(other) }); o != nil {
		return body, o, nil
	}
	return nil, e, &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "model_not_found",
		msg: fmt.Sprintf("The model `%s` does not exist. This gateway serves `%s` (currently %s).", other, t.ModelName, e.Pool.Model)}
}

// otherSharing returns the canary's pool other than e for which match is
// true, when the canary's weights chose e (drawn) and that pool gets new
// requests; nil otherwise.
func otherSharing(t *route.Table, e *route.Entry, drawn bool, match func(*route.Entry) bool) *route.Entry {
	if !drawn || t.Canary == nil {
		return nil
	}
	for _, o := range [...]*route.Entry{t.Live, t.Canary} {
		if o != e && t.Shares(o) && match(o) {
			return o
		}
	}
	return nil
}

// finish hands a completed exchange to the observer, the shadow mirror
// (body then belongs to it) and the access log.
func (h *Handler) finish(o *Observation, e *route.Entry, path string, body []byte, mirrored bool, c *capture) {
	if o.trace != nil {
		o.trace.end(o)
		o.trace = nil // a mirrored copy of o has no use for it
	}
	if h.opts.Observer != nil {
		h.opts.Observer.Observe(o)
	}
	if mirrored {
		h.opts.Mirror.Submit(c.mirrored(path, body, o))
	}
	if h.opts.AccessLog {
		logAccess(h.log, o, modelOf(e, body))
	}
}

// wantMirror asks the Mirror whether to copy this request.
func (h *Handler) wantMirror(method string, e *route.Entry, body []byte) bool {
	m := h.opts.Mirror
	return m != nil && method == http.MethodPost && len(body) > 0 && m.Want(e.Pool.Name, len(body))
}

// readBody reads the whole request body (see bufferBody) within the body
// timeout. LLM request bodies are small JSON documents; holding them lets a
// failed attempt go to another replica and the model field be rewritten.
// held is what the body holds of h.buffered until the request ends.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, held int64, aerr *apiError) {
	if r.ContentLength > h.opts.MaxBodyBytes {
		return nil, 0, errBodyTooLarge(h.opts.MaxBodyBytes)
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, 0, nil
	}
	rc := http.NewResponseController(w)
	d := h.bodyDeadline(time.Now())
	if !d.IsZero() {
		_ = rc.SetReadDeadline(d)
	}
	body, held, aerr = h.bufferBody(r.Body, r.ContentLength, nil)
	if aerr == nil && !d.IsZero() {
		// The connection's background read (net/http's watch for a
		// hang-up) must not inherit it. After a failure it stays: what
		// net/http would read of the rest of the body is not worth a wait.
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, held, aerr
}

// attempt is how one serving path tries a replica (the net/http exchange
// and the loop's rawExchange); Handler.forward holds the retry policy they
// share. Their bool results are forward's: for exchange, whether to abort
// the client connection; for rawExchange, whether it can serve another
// request.
type attempt interface {
	// try sends the request to rep and reads the answer's head: its status.
	try(rep *pool.Replica) (status int, err error)
	// drop discards what try left: a failed connection, an answer not relayed.
	drop()
	// relay sends the answer try read to the client.
	relay() bool
	// fail answers e; nothing of an answer reached the client.
	fail(e *apiError) bool
	// failed says what the path knows of err, the error try returned
	// (before drop).
	failed(err error) attemptError
	// expired reports that the whole request's timeout passed.
	expired() bool
}

// forward sends a request to pool p through a, retrying once on another
// replica of the pool when nothing reached the client yet: after a failure
// classify says another replica may take, or a 502/503 while another
// replica can take it. Every attempt's outcome goes to the outlier
// detector. o records the replica tried and the retry. body is the
// buffered request body (nil when not buffered), for a pool.BodyPicker.
func (h *Handler) forward(p *pool.Pool, o *Observation, a attempt, body []byte) bool {
	var skip *pool.Replica
	var last *apiError // the last failed attempt's answer
	for n := 0; n < 2; n++ {
		var rep *pool.Replica
		if n == 0 {
			var gone bool
			if rep, gone = h.pickFirst(p, body, a); gone {
				o.Status, o.Error = statusClientClosed, "client_closed"
				return false
			}
		} else if rep = h.pick(p.Replicas, skip, body); rep != nil {
			rep.Acquire()
		}
		if rep == nil {
			if n == 0 {
				return a.fail(errNoHealthyReplica(p.Name))
			}
			break
		}
		if n > 0 {
			o.Retried = true
			if o.trace != nil {
				o.trace.span.Retry(time.Now(), skip.Name, last.code)
			}
		}
		o.Replica = rep
		status, err := a.try(rep)
		if err != nil {
			v := classify(a.failed(err))
			rep.Release()
			a.drop()
			h.opts.Outlier.Record(p, rep, v.outcome)
			if v.answer.status == statusClientClosed {
				o.Status, o.Error = statusClientClosed, "client_closed"
				return false
			}
			h.log.Warn("replica attempt failed", "pool", p.Name, "replica", rep.Name, "error", err.Error(), "code", v.answer.code, "retry", v.retry)
			last = v.answer
			if v.retry && !a.expired() {
				skip = rep
				continue
			}
			return a.fail(v.answer)
		}
		if retryStatus(status) && n == 0 && h.picker.Pick(p.Replicas, rep) != nil {
			last = errReplicaStatus(status)
			a.drop()
			rep.Release()
			h.opts.Outlier.Record(p, rep, pool.OutcomeFailure)
			skip = rep
			continue
		}
		result := a.relay()
		if x, ok := a.(*rawExchange); ok && x.parked {
			return result // the stream goes on parked; rawExchange.resume releases rep
		}
		rep.Release()
		h.opts.Outlier.Record(p, rep, relayOutcome(o))
		return result
	}
	return a.fail(last)
}

// shownReplica is r when answers may name their replica (X-Cutover-Replica),
// else nil.
func (h *Handler) shownReplica(r *pool.Replica) *pool.Replica {
	if h.opts.HideReplica {
		return nil
	}
	return r
}

// relayOutcome is what a relayed answer says about its replica: a 5xx, or
// an answer that broke or went silent, is a failure (a broken one of the
// connection).
func relayOutcome(o *Observation) pool.Outcome {
	if o.Error == "upstream_broken" {
		return pool.OutcomeBroken // its connection broke: see pool.OutcomeBroken
	}
	if o.Status >= 500 || strings.HasPrefix(o.Error, "upstream_") {
		return pool.OutcomeFailure
	}
	return pool.OutcomeSuccess
}

// A replica that refuses a request (uvicorn/h11 and aiohttp answer 400 to
// a header section over their limit) may answer and close with the body
// unread, and its kernel then resets the connection under a body still
// being written. Upstream reads the answer after such a write error;
// http.Transport (https replicas, proxy.client: net/http) returns the
// write error or the answer, whichever its goroutines see first, so the
// client got a 502 for a request the replica had answered. Bodies larger
// than a socket's buffers take at once are therefore sent with
// "Expect: 100-continue" on that path: the replica answers before the body
// is sent, and Transport then closes the connection without writing it.
// vLLM and SGLang (uvicorn), TGI (hyper), llama.cpp's server, Ollama and
// mock-llm (net/http) send 100 Continue when they start reading a body;
// a replica that sends nothing gets the body after expectContinueTimeout.
// The cost is one round trip on requests whose prefill takes far longer.
const (
	expectContinueAbove   = 64 << 10
	expectContinueTimeout = time.Second
)

var expectContinue = []string{"100-continue"}

// logAccess writes one access-log line; model is "" for requests
// without a body.
func logAccess(log *slog.Logger, o *Observation, model string) {
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("method", o.Method),
		slog.String("path", o.Path),
		slog.String("pool", o.Pool),
		slog.Int("status", o.Status),
		slog.Duration("ttfb", o.TTFB),
		slog.Duration("duration", o.Duration),
		slog.Int64("bytes", o.Bytes),
	)
	if o.Replica != nil {
		attrs = append(attrs, slog.String("replica", o.Replica.Name))
	}
	if o.Key != "" {
		attrs = append(attrs, slog.String("key", o.Key))
	}
	if model != "" {
		attrs = append(attrs, slog.String("model", model))
	}
	if o.Stream {
		attrs = append(attrs, slog.Bool("stream", true), slog.Duration("ttft", o.TTFT))
	}
	if o.Tokens > 0 {
		attrs = append(attrs, slog.Int("tokens", o.Tokens))
	}
	if o.Retried {
		attrs = append(attrs, slog.Bool("retried", true))
	}
	if o.StreamError {
		attrs = append(attrs, slog.Bool("stream_error", true))
	}
	if o.Error != "" {
		attrs = append(attrs, slog.String("error", o.Error))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// modelOf is the pool's model id for requests that carry a body, for the
// access log.
func modelOf(e *route.Entry, body []byte) string {
	if len(body) == 0 {
		return ""
	}
	return e.Pool.Model
}

// hasDotSegment reports a "." or ".." path segment (also when sent
// escaped, as %2e): such a path could leave /v1/ at the replica.
func hasDotSegment(p string) bool {
	if strings.IndexByte(p, '.') < 0 {
		return false // the common case, at the cost of one vectorised search
	}
	for p != "" {
		var seg string
		seg, p, _ = strings.Cut(p, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
