// Package mockllm simulates a vLLM replica's OpenAI-compatible HTTP API,
// with deterministic answers, configurable timing and injectable faults.
//
// Endpoints, shaped like vLLM's:
//
//	GET  /health                200 with an empty body; 503 while loading or failing
//	GET  /v1/models             the served model
//	POST /v1/chat/completions   streamed (SSE) or not
//	POST /v1/completions        streamed (SSE) or not
//	GET  /metrics               Prometheus text, vLLM's metric names
//	GET, POST /mock/faults      simulator only: read or change faults at run time
//
// With Config.Sleep, vLLM's sleep-mode routes too (/sleep, /wake_up,
// /is_sleeping, /collective_rpc, /reset_prefix_cache); see SleepConfig.
//
// With Config.APIKey set, /v1/* needs Authorization: Bearer KEY and
// answers 401 {"error":"Unauthorized"} without it, as vLLM's --api-key.
//
// Errors use vLLM's shape,
// {"error":{"message":...,"type":...,"param":...,"code":N}}.
package mockllm

import (
	"cmp"
	"context"
	"crypto/subtle"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/internal/jsonstr"
)

// Server is one simulated vLLM replica; it is an http.Handler.
// Create it with New; its methods are safe for concurrent use.
type Server struct {
	cfg       Config // immutable after New, defaults applied
	modelJSON []byte // cfg.Model as a JSON string literal
	modelHash uint64 // answer hash state after the model id
	models    []byte // the /v1/models body
	idPrefix  uint64 // random high half of response ids
	ids       atomic.Uint64
	draws     atomic.Uint64 // fault-injection draws so far
	slots     chan struct{} // one element per running sequence; nil when unlimited
	kv        *kvCache      // nil without Config.KVBlocks

	// compute books the prefills (Config.MaxBatchedTokens); nil without it
	// (or without Config.PrefillPerToken).
	compute *computeTimeline

	start   time.Time        // when New returned
	readyAt time.Time        // start + StartupPeriod
	now     func() time.Time // the clock for readyAt; tests replace it before serving
	loaded  atomic.Bool      // set once the startup period is over

	faults faults

	running   atomic.Int64
	waiting   atomic.Int64
	requests  atomic.Uint64
	succeeded atomic.Uint64
	failed    atomic.Uint64
	rejected  atomic.Uint64
	canceled  atomic.Uint64

	metrics *metrics

	sleep sleepState // vLLM's sleep mode; see sleep.go
}

// Stats is a snapshot of a Server's request counters.
type Stats struct {
	// Requests counts POSTs to the completion endpoints after the startup
	// period, whatever their outcome.
	Requests uint64
	// Succeeded counts completion requests answered in full.
	Succeeded uint64
	// Failed counts completion requests failed on purpose (ErrorRate,
	// StreamErrorRate).
	Failed uint64
	// Rejected counts completion requests refused with a 4xx (bad JSON,
	// unknown model, bad max_tokens, ...).
	Rejected uint64
	// Canceled counts completion requests whose client left before the end.
	Canceled uint64
	// Running is the number of sequences being generated now.
	Running int
	// Waiting is the number of requests queued for a free slot now.
	Waiting int
}

// New returns a Server for cfg, after applying defaults and validating it;
// an invalid field is reported as a *FieldError. The startup period starts now.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.Sleep.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		modelJSON: jsonstr.Append(nil, cfg.Model),
		modelHash: modelHash(cmp.Or(cfg.AnswerAs, cfg.Model)),
		idPrefix:  rand.Uint64(),
		start:     time.Now(),
		now:       time.Now,
	}
	s.readyAt = s.start.Add(cfg.StartupPeriod)
	if cfg.MaxConcurrent > 0 {
		s.slots = make(chan struct{}, cfg.MaxConcurrent)
	}
	if cfg.KVBlocks > 0 {
		s.kv = newKVCache(cfg.KVBlocks, cfg.BlockSize)
	}
	if cfg.MaxBatchedTokens > 0 && cfg.PrefillPerToken > 0 {
		s.compute = &computeTimeline{chunk: cfg.PrefillPerToken * time.Duration(cfg.MaxBatchedTokens)}
	}
	s.loaded.Store(cfg.StartupPeriod == 0)
	s.faults.failHealth.Store(cfg.FailHealth)
	s.SetErrorRate(cfg.ErrorRate)
	s.SetStreamErrorRate(cfg.StreamErrorRate)
	s.SetExtraLatency(cfg.ExtraLatency)
	s.SetTTFT(cfg.TTFT)
	s.SetITL(cfg.ITL)
	s.models = s.modelsBody()
	s.metrics = newMetrics(s)
	s.sleep.cfg = cfg.Sleep
	return s, nil
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:  s.requests.Load(),
		Succeeded: s.succeeded.Load(),
		Failed:    s.failed.Load(),
		Rejected:  s.rejected.Load(),
		Canceled:  s.canceled.Load(),
		Running:   int(s.running.Load()),
		Waiting:   int(s.waiting.Load()),
	}
}

// ServeHTTP routes a request to the endpoint for its path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/mock/faults" {
		s.serveFaults(w, r)
		return
	}
	if s.cfg.APIKey != "" && strings.HasPrefix(path, "/v1") && !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, unauthorizedBody)
		return
	}
	if !s.ready() {
		s.serveLoading(w, r)
		return
	}
	r, done := s.sleepGate(w, r)
	if done {
		return
	}
	switch path {
	case "/v1/chat/completions":
		s.serveCompletion(w, r, chatEndpoint)
	case "/v1/completions":
		s.serveCompletion(w, r, textEndpoint)
	case "/health":
		if !allowGet(w, r) {
			return
		}
		status := http.StatusOK
		if s.faults.failHealth.Load() {
			status = http.StatusServiceUnavailable
		}
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(status)
	case "/v1/models":
		if !allowGet(w, r) || !s.delay(r.Context()) {
			return
		}
		writeJSON(w, http.StatusOK, s.models)
	case "/metrics":
		if allowGet(w, r) {
			s.metrics.handler.ServeHTTP(w, r)
		}
	default:
		writeError(w, &apiError{status: http.StatusNotFound, typ: "Not Found", message: "Not Found"})
	}
}

// unauthorizedBody is vLLM's answer to a /v1 request without its API key.
var unauthorizedBody = []byte(`{"error":"Unauthorized"}`)

// authorized reports whether r carries Authorization: Bearer APIKey,
// compared in constant time.
func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) == 1
}

// ready reports whether the startup period is over.
func (s *Server) ready() bool {
	if s.loaded.Load() {
		return true
	}
	if s.now().Before(s.readyAt) {
		return false
	}
	s.loaded.Store(true)
	return true
}

// serveLoading answers 503 like a replica still loading its model.
func (s *Server) serveLoading(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	writeError(w, &apiError{status: http.StatusServiceUnavailable, typ: typeUnavailable,
		message: "The model is still loading."})
}

// allowGet answers 405 unless r is a GET or HEAD, and reports whether it was.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	writeMethodNotAllowed(w, "GET, HEAD")
	return false
}

// delay waits the current extra latency and reports whether the client is
// still there.
func (s *Server) delay(ctx context.Context) bool {
	var p pacer
	defer p.stop()
	return p.wait(ctx, time.Duration(s.faults.extraLatency.Load()))
}

// draw reports whether a fault with probability rate happens now. Draws come
// from a counter-based sequence seeded by Config.Seed, so sequential requests
// see the same faults on every run.
func (s *Server) draw(rate float64) bool {
	switch {
	case rate <= 0:
		return false
	case rate >= 1:
		return true
	}
	x := mix64(uint64(s.cfg.Seed) + s.draws.Add(1)*golden64)
	return float64(x>>11)/(1<<53) < rate
}

// acquire takes a sequence slot, queueing while none is free; it reports
// false if the client left first. Release the slot with release.
func (s *Server) acquire(ctx context.Context) bool {
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
		default:
			s.waiting.Add(1)
			select {
			case s.slots <- struct{}{}:
				s.waiting.Add(-1)
			case <-ctx.Done():
				s.waiting.Add(-1)
				return false
			}
		}
	}
	s.running.Add(1)
	return true
}

// release gives back a slot taken by acquire.
func (s *Server) release() {
	s.running.Add(-1)
	if s.slots != nil {
		<-s.slots
	}
}

// modelsBody renders /v1/models as vLLM does.
func (s *Server) modelsBody() []byte {
	created := strconv.AppendInt(nil, s.start.Unix(), 10)
	b := []byte(`{"object":"list","data":[{"id":`)
	b = append(b, s.modelJSON...)
	b = append(b, `,"object":"model","created":`...)
	b = append(b, created...)
	b = append(b, `,"owned_by":"vllm","root":`...)
	b = append(b, s.modelJSON...)
	b = append(b, `,"parent":null,"max_model_len":`...)
	b = strconv.AppendInt(b, int64(s.cfg.MaxModelLen), 10)
	b = append(b, `,"permission":[{"id":"modelperm-`...)
	b = appendHex16(b, s.idPrefix)
	b = appendHex16(b, mix64(s.idPrefix))
	b = append(b, `","object":"model_permission","created":`...)
	b = append(b, created...)
	b = append(b, `,"allow_create_engine":false,"allow_sampling":true,"allow_logprobs":true,`+
		`"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,`+
		`"organization":"*","group":null,"is_blocking":false}]}`...)
	for _, name := range s.cfg.LoRAModules { // as vLLM lists an adapter: no max_model_len
		nj := jsonstr.Append(nil, name)
		b = append(b, `,{"id":`...)
		b = append(b, nj...)
		b = append(b, `,"object":"model","created":`...)
		b = append(b, created...)
		b = append(b, `,"owned_by":"vllm","root":`...)
		b = jsonstr.Append(b, "/loras/"+name)
		b = append(b, `,"parent":`...)
		b = append(b, s.modelJSON...)
		b = append(b, `,"max_model_len":null,"permission":[]}`...)
	}
	return append(b, "]}"...)
}

// pacer waits on one reusable timer, giving up when the context ends.
type pacer struct{ t *time.Timer }

// wait blocks for d (not at all when d <= 0) and reports whether ctx is
// still live.
func (p *pacer) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if p.t == nil {
		p.t = time.NewTimer(d)
	} else {
		p.t.Reset(d)
	}
	select {
	case <-p.t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stop releases the timer.
func (p *pacer) stop() {
	if p.t != nil {
		p.t.Stop()
	}
}
