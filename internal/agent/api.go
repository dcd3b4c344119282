package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/auth"
)

// Handler returns the agent's HTTP API. Every route needs
// Authorization: Bearer TOKEN (401 otherwise).
//
//	GET    /v1/replicas                  every replica
//	POST   /v1/replicas[?wait=20m]       {"model":ID,"gpus":N} → 201, the replica (starting;
//	                                     with wait: running, or an error with its last log lines)
//	GET    /v1/replicas/{id}             one replica
//	POST   /v1/replicas/{id}/stop        SIGTERM, SIGKILL after stop_grace; answers once gone
//	POST   /v1/replicas/{id}/sleep       ?level=1|2 (default 1): vLLM's POST /sleep
//	POST   /v1/replicas/{id}/wake        [?tags=...]: vLLM's POST /wake_up (level 2: the full sequence)
//	DELETE /v1/replicas/{id}             forget an exited replica
//	GET    /v1/gpus                      the ledger: [{"index":0,"replica":ID|""}]
//
// Errors are {"error":{"message":...}} with 400, 401, 404, 409 (state),
// 502 (the replica refused) or 503 (no capacity).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/replicas", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"replicas": a.Replicas()})
	})
	mux.HandleFunc("POST /v1/replicas", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			StartRequest
			GPUs *int `json:"gpus"` // told apart from absent (1)
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeErr(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
		req := body.StartRequest
		if body.GPUs != nil {
			if *body.GPUs < 1 {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("gpus %d: must be at least 1 (omit gpus for 1)", *body.GPUs))
				return
			}
			req.GPUs = *body.GPUs
		}
		var wait time.Duration
		if v := r.URL.Query().Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				writeErr(w, http.StatusBadRequest, "wait "+strconv.Quote(v)+": want a duration, e.g. 20m")
				return
			}
			wait = d
		}
		rep, err := a.Start(req)
		if err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		if wait > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			defer cancel()
			rep, err = a.AwaitReady(ctx, rep.ID)
			if err != nil {
				writeErr(w, statusOf(err), err.Error())
				return
			}
		}
		writeJSON(w, http.StatusCreated, rep)
	})
	mux.HandleFunc("GET /v1/replicas/{id}", func(w http.ResponseWriter, r *http.Request) {
		rep, ok := a.Get(r.PathValue("id"))
		if !ok {
			writeErr(w, http.StatusNotFound, "no such replica: "+r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("DELETE /v1/replicas/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Forget(r.PathValue("id")); err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/replicas/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		// Not tied to the caller: a stop once begun finishes.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), a.cfg.StopGrace+30*time.Second)
		defer cancel()
		rep, err := a.Stop(ctx, r.PathValue("id"))
		if err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/replicas/{id}/sleep", func(w http.ResponseWriter, r *http.Request) {
		level := 1
		if v := r.URL.Query().Get("level"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeErr(w, http.StatusBadRequest, "level "+strconv.Quote(v)+": want 1 or 2")
				return
			}
			level = n
		}
		rep, err := a.Sleep(r.Context(), r.PathValue("id"), level)
		if err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/replicas/{id}/wake", func(w http.ResponseWriter, r *http.Request) {
		rep, err := a.Wake(r.Context(), r.PathValue("id"), r.URL.Query()["tags"])
		if err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET /v1/gpus", func(w http.ResponseWriter, _ *http.Request) {
		type gpu struct {
			Index   int    `json:"index"`
			Replica string `json:"replica"`
		}
		var out []gpu
		for i, id := range a.GPUs() {
			out = append(out, gpu{i, id})
		}
		writeJSON(w, http.StatusOK, map[string]any{"gpus": out})
	})
	token := []byte(a.cfg.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := auth.CutBearer(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			writeErr(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusOf maps an agent error to its HTTP status.
func statusOf(err error) int {
	var re *ReplicaError
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrNoCapacity):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrState):
		return http.StatusConflict
	case errors.As(err, &re), errors.Is(err, ErrUnreachable):
		return http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrExited):
		return http.StatusInternalServerError
	}
	if strings.Contains(err.Error(), "stop it first") {
		return http.StatusConflict
	}
	if strings.HasPrefix(err.Error(), "replica of ") { // the command did not start
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg}})
}
