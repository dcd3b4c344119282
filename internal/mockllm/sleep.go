package mockllm

// vLLM's sleep mode, simulated.
//
// What vLLM does, and so what this file does:
//
//   - The routes POST /sleep, POST /wake_up, GET /is_sleeping,
//     POST /collective_rpc and POST /reset_prefix_cache exist only when the
//     server runs with VLLM_SERVER_DEV_MODE=1 (SleepConfig.DevMode); without
//     it they are 404 like any unknown path.
//   - The engine must be started with --enable-sleep-mode (SleepConfig.Enabled).
//     With the dev routes but without it, /is_sleeping says false and /sleep
//     fails with a 500, as vLLM's engine raises when sleep mode is off.
//   - POST /sleep?level=1|2&mode=abort|wait|keep (defaults 1 and abort) answers
//     200 with an empty body once asleep. Level 1 keeps the weights (in CPU
//     memory) and drops the KV cache; level 2 drops both. mode=abort cuts the
//     requests in flight, wait lets them finish first; the simulator treats
//     keep as wait. Sleeping again while asleep is a no-op.
//   - POST /wake_up (optional repeated tags=weights|kv_cache) answers 200 with
//     an empty body; the server is asleep until every tag is awake. Waking a
//     server that is not asleep is a no-op.
//   - GET /is_sleeping answers {"is_sleeping": bool}.
//   - After a level-2 sleep the woken weights are garbage until
//     POST /collective_rpc {"method":"reload_weights"} reloads them: the
//     documented sequence is wake_up?tags=weights, reload_weights,
//     wake_up?tags=kv_cache, reset_prefix_cache. Woken without the reload,
//     the simulator answers completions with other (wrong) text.
//   - While asleep, /v1/chat/completions and /v1/completions answer 503
//     {"error":{"message":"Model is currently in sleep mode...","type":
//     "ModelSleepingError","code":503}}, as vLLM's sleep-mode page documents
//     (docs/source/features/sleep_mode.md, "Protected Endpoints");
//     /health, /v1/models and /metrics keep answering.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SleepConfig enables and times the simulated vLLM sleep mode.
// The zero value leaves sleep mode off and its routes absent.
type SleepConfig struct {
	// Enabled is vLLM's --enable-sleep-mode.
	Enabled bool
	// DevMode is VLLM_SERVER_DEV_MODE=1: without it the sleep, wake-up and
	// collective_rpc routes do not exist (404).
	DevMode bool
	// SleepDelay is how long POST /sleep takes (offloading the weights).
	SleepDelay time.Duration
	// WakeDelay is how long POST /wake_up takes (bringing weights back).
	WakeDelay time.Duration
	// LoadDelay is how long collective_rpc reload_weights takes (loading the
	// weights from disk after a level-2 sleep).
	LoadDelay time.Duration
}

// validate names the first negative delay.
func (c SleepConfig) validate() error {
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"Sleep.SleepDelay", c.SleepDelay},
		{"Sleep.WakeDelay", c.WakeDelay},
		{"Sleep.LoadDelay", c.LoadDelay},
	} {
		if d.v < 0 {
			return &FieldError{Field: d.field, Value: d.v, Err: errors.New("must not be negative")}
		}
	}
	return nil
}

// Sleep-mode tags, as vLLM names them.
const (
	tagWeights = "weights"
	tagKVCache = "kv_cache"
)

// typeModelSleeping is the error type vLLM documents for a request to a
// sleeping model.
const typeModelSleeping = "ModelSleepingError"

// sleepingMessage is vLLM's documented message for a request while asleep.
const sleepingMessage = "Model is currently in sleep mode. Please wake it up first with a POST request to /wake_up"

// sleepState is the sleep-mode state of a Server. The zero value is awake.
type sleepState struct {
	cfg SleepConfig // set by New

	mu            sync.Mutex
	asleep        map[string]bool // tags asleep; empty when awake
	level         int             // level of the current or last sleep
	garbage       atomic.Bool     // weights woken after level 2 and not reloaded; read without mu
	epoch         context.Context // cancelled by a sleep with mode=abort
	cancelEpoch   context.CancelFunc
	inflight      int // completion requests being served
	prefixResets  int
	transitioning bool // a sleep or wake is in progress
}

// SleepStats is a snapshot of the simulated sleep mode.
type SleepStats struct {
	// Sleeping is what /is_sleeping answers.
	Sleeping bool
	// Level is the level of the current or last sleep (0: never slept).
	Level int
	// Garbage reports weights woken after a level-2 sleep and not reloaded.
	Garbage bool
	// PrefixCacheResets counts POST /reset_prefix_cache.
	PrefixCacheResets int
	// Transitioning reports a sleep or wake-up in progress.
	Transitioning bool
}

// SleepStats returns the current sleep-mode state.
func (s *Server) SleepStats() SleepStats {
	st := &s.sleep
	st.mu.Lock()
	defer st.mu.Unlock()
	return SleepStats{Sleeping: len(st.asleep) > 0, Level: st.level, Garbage: st.garbage.Load(),
		PrefixCacheResets: st.prefixResets, Transitioning: st.transitioning}
}

// garbageWeights reports whether answers must come from unloaded weights.
func (s *Server) garbageWeights() bool {
	return s.sleep.garbage.Load()
}

// garbageSalt turns a right answer's seed into a wrong one.
const garbageSalt = 0x6a09e667f3bcc909

// sleepGate serves the sleep-mode routes and refuses completions while
// asleep. It reports whether it answered; otherwise the request goes on
// with the returned request, whose context a sleep with mode=abort cancels.
func (s *Server) sleepGate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	st := &s.sleep
	path := r.URL.Path
	if st.cfg.DevMode {
		switch path {
		case "/sleep":
			s.serveSleep(w, r)
			return r, true
		case "/wake_up":
			s.serveWakeUp(w, r)
			return r, true
		case "/is_sleeping":
			if allowGet(w, r) {
				writeJSON(w, http.StatusOK, []byte(`{"is_sleeping":`+strconv.FormatBool(s.SleepStats().Sleeping)+`}`))
			}
			return r, true
		case "/collective_rpc":
			s.serveCollectiveRPC(w, r)
			return r, true
		case "/reset_prefix_cache":
			if allowPost(w, r) {
				st.mu.Lock()
				st.prefixResets++
				st.mu.Unlock()
				w.Header()["Content-Length"] = []string{"0"}
				w.WriteHeader(http.StatusOK)
			}
			return r, true
		}
	}
	if !st.cfg.Enabled || (path != "/v1/chat/completions" && path != "/v1/completions") || r.Method != http.MethodPost {
		return r, false
	}
	st.mu.Lock()
	if len(st.asleep) > 0 || st.transitioning {
		st.mu.Unlock()
		writeError(w, &apiError{status: http.StatusServiceUnavailable, typ: typeModelSleeping, message: sleepingMessage})
		return r, true
	}
	if st.epoch == nil {
		st.epoch, st.cancelEpoch = context.WithCancel(context.Background())
	}
	epoch := st.epoch
	st.inflight++
	st.mu.Unlock()
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(epoch, cancel)
	// net/http cancels the request's context when ServeHTTP returns: that
	// is when the request stops counting as in flight.
	context.AfterFunc(ctx, func() {
		stop()
		st.mu.Lock()
		st.inflight--
		st.mu.Unlock()
	})
	return r.WithContext(ctx), false
}

// allowPost answers 405 unless r is a POST, and reports whether it was.
func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	writeMethodNotAllowed(w, http.MethodPost)
	return false
}

// serveSleep handles POST /sleep?level=1|2&mode=abort|wait|keep.
func (s *Server) serveSleep(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	st := &s.sleep
	q := r.URL.Query()
	level := 1
	if v := q.Get("level"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || (n != 1 && n != 2) {
			writeError(w, badRequest("level", "level must be 1 or 2, got %q", v))
			return
		}
		level = n
	}
	mode := q.Get("mode")
	switch mode {
	case "":
		mode = "abort"
	case "abort", "wait", "keep":
	default:
		writeError(w, badRequest("mode", "mode must be abort, wait or keep, got %q", mode))
		return
	}
	if !st.cfg.Enabled {
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: typeInternal,
			message: "Sleep mode is not enabled. Start the server with --enable-sleep-mode."})
		return
	}
	st.mu.Lock()
	if len(st.asleep) > 0 || st.transitioning {
		st.mu.Unlock() // vLLM: "Executor is already sleeping." and a 200
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusOK)
		return
	}
	st.transitioning = true // new completions are refused from now on
	if mode == "abort" && st.cancelEpoch != nil {
		st.cancelEpoch()
		st.epoch, st.cancelEpoch = nil, nil
	}
	st.mu.Unlock()

	ok := s.awaitIdle(r.Context())
	if ok {
		var p pacer
		ok = p.wait(r.Context(), st.cfg.SleepDelay)
		p.stop()
	}
	st.mu.Lock()
	st.transitioning = false
	if ok {
		st.asleep = map[string]bool{tagWeights: true, tagKVCache: true}
		st.level = level
		st.garbage.Store(false)
	}
	st.mu.Unlock()
	if !ok {
		return // the caller left; the server stays awake
	}
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// awaitIdle waits until no completion request is in flight, or ctx ends.
func (s *Server) awaitIdle(ctx context.Context) bool {
	st := &s.sleep
	var p pacer
	defer p.stop()
	for {
		st.mu.Lock()
		n := st.inflight
		st.mu.Unlock()
		if n == 0 {
			return true
		}
		if !p.wait(ctx, 5*time.Millisecond) {
			return false
		}
	}
}

// serveWakeUp handles POST /wake_up with optional repeated tags.
func (s *Server) serveWakeUp(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	st := &s.sleep
	tags := r.URL.Query()["tags"]
	for _, t := range tags {
		if t != tagWeights && t != tagKVCache {
			writeError(w, badRequest("tags", "unknown tag %q: want weights or kv_cache", t))
			return
		}
	}
	st.mu.Lock()
	if len(st.asleep) == 0 || st.transitioning {
		st.mu.Unlock() // vLLM: "Executor is not sleeping." and a 200
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusOK)
		return
	}
	if len(tags) == 0 {
		for t := range st.asleep {
			tags = append(tags, t)
		}
	}
	st.transitioning = true
	st.mu.Unlock()

	var p pacer
	ok := p.wait(r.Context(), st.cfg.WakeDelay)
	p.stop()
	st.mu.Lock()
	st.transitioning = false
	if ok {
		for _, t := range tags {
			if st.asleep[t] && t == tagWeights && st.level == 2 {
				st.garbage.Store(true) // memory is back, the weights are not
			}
			delete(st.asleep, t)
		}
	}
	st.mu.Unlock()
	if !ok {
		return
	}
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// rpcRequest is the body of POST /collective_rpc.
type rpcRequest struct {
	Method  string          `json:"method"`
	Timeout *float64        `json:"timeout"`
	Args    json.RawMessage `json:"args"`
	Kwargs  json.RawMessage `json:"kwargs"`
}

// serveCollectiveRPC handles POST /collective_rpc; the simulator knows the
// one method sleep mode needs, reload_weights.
func (s *Server) serveCollectiveRPC(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return
	}
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Method == "" {
		writeError(w, badRequest("method", "body must be JSON with a method, e.g. {\"method\":\"reload_weights\"}"))
		return
	}
	if req.Method != "reload_weights" {
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: typeInternal,
			message: fmt.Sprintf("the simulator implements only reload_weights, not %q", req.Method)})
		return
	}
	st := &s.sleep
	st.mu.Lock()
	if st.asleep[tagWeights] {
		st.mu.Unlock()
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: typeInternal,
			message: "cannot reload weights while they are asleep: POST /wake_up?tags=weights first"})
		return
	}
	st.mu.Unlock()
	var p pacer
	ok := p.wait(r.Context(), st.cfg.LoadDelay)
	p.stop()
	if !ok {
		return
	}
	st.mu.Lock()
	st.garbage.Store(false)
	st.mu.Unlock()
	writeJSON(w, http.StatusOK, []byte(`{"results":[null]}`))
}
