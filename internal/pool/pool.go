// Package pool holds replicas, the pools they form, their health state, and
// the policies that pick one replica of a pool for a request.
package pool

import (
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MaxReplicas is the most replicas one pool may have: a configured pool
// (pools.<pool>.replicas) or a deploy with more is refused. It bounds what
// one admin call makes the gateway check, keep and report (status,
// /metrics) per replica.
const MaxReplicas = 256

// Replica is one OpenAI-compatible server (a vLLM process, say). Its
// configuration is immutable; its runtime state is atomic. A Replica is
// shared by every routing table that contains it, so its state outlives
// table swaps.
type Replica struct {
	// URL is the replica's base URL, without a trailing slash.
	URL *url.URL
	// Name is URL as a string, used in headers, logs and status.
	Name string
	// NameHeader is []string{Name}, shared by responses' replica header.
	// Never modify it.
	NameHeader []string
	// Authorization, when not empty, is the Authorization header value
	// sent with every request to the replica (health checks, warm-up,
	// synthetic tests, shadow copies, proxied requests), such as
	// "Bearer KEY" for vLLM's --api-key. It is a secret: never log it.
	// Set it before the replica is shared; it does not change after.
	Authorization string

	healthy  atomic.Bool // by active checks (and Eject)
	asleep   atomic.Bool // its engine sleeps (vLLM's sleep mode): see SetAsleep
	inflight atomic.Int64
	requests atomic.Uint64            // requests sent, retries included
	maxLen   atomic.Int64             // max_model_len its /v1/models gave for the pool's model; 0 unknown
	listed   atomic.Pointer[[]string] // the other ids its /v1/models gave beside the pool's model (LoRA adapters); nil before
	out      outlierState             // passive health: see Outlier

	engine atomic.Pointer[EngineLoad] // the llm balancer's scraped metrics; nil before
	wake   atomic.Pointer[waitQueue]  // the gateway queue to tell when a slot frees; nil before one waited for r
	bit    uint64                     // the replica's bit in the llm balancer's prefix table

	mu        sync.Mutex // guards the fields below
	passes    int        // consecutive passed checks
	fails     int        // consecutive failed checks
	lastErr   string     // last check or passive failure, "" when healthy
	checkedAt time.Time  // time of the last active check
	changedAt time.Time  // time healthy last changed
}

// NewReplica returns a replica for the base URL u, initially healthy.
// Callers run a health check round before serving to learn the truth.
func NewReplica(u *url.URL) *Replica {
	r := &Replica{URL: u, Name: u.String(), bit: nextReplicaBit()}
	r.NameHeader = []string{r.Name}
	r.healthy.Store(true)
	return r
}

// Healthy reports whether the replica may get new requests: active checks
// pass, outlier detection has not ejected it and its engine is not known
// to sleep.
func (r *Replica) Healthy() bool {
	return r.healthy.Load() && !r.out.ejected.Load() && !r.asleep.Load()
}

// SetAsleep takes r out of rotation while its engine sleeps (vLLM's sleep
// mode: /health passes, completions fail with 503), and puts it back.
func (r *Replica) SetAsleep(asleep bool) { r.asleep.Store(asleep) }

// InFlight returns the number of requests the gateway has open on r.
func (r *Replica) InFlight() int64 { return r.inflight.Load() }

// Acquire counts one more request sent to r and in flight on it. Call
// Release when the response, stream included, is done.
func (r *Replica) Acquire() {
	r.inflight.Add(1)
	r.requests.Add(1)
}

// Requests returns how many requests the gateway has sent to r since start.
func (r *Replica) Requests() uint64 { return r.requests.Load() }

// Release counts one request less in flight on r, and lets a request
// held in the llm balancer's gateway queue take the freed slot.
func (r *Replica) Release() {
	r.inflight.Add(-1)
	r.freed()
}

// HealthState is a snapshot of a replica's health bookkeeping.
type HealthState struct {
	// Healthy is Healthy(): checks pass and no outlier ejection.
	Healthy bool
	// LastError is why the replica is out (the last failed check, or the
	// outlier ejection's reason), "" when it is in.
	LastError string
	CheckedAt time.Time
	ChangedAt time.Time
	// EjectedUntil is when an outlier ejection ends, zero when none runs.
	EjectedUntil time.Time
}

// Health returns a snapshot of r's health state.
func (r *Replica) Health() HealthState {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := HealthState{Healthy: r.Healthy(), LastError: r.lastErr, CheckedAt: r.checkedAt, ChangedAt: r.changedAt}
	if r.out.ejected.Load() {
		h.EjectedUntil = r.out.until
		if h.LastError == "" {
			h.LastError = "outlier: " + r.out.reason
		}
	}
	return h
}

// RecordCheck records the outcome of one active check (err nil = passed)
// and flips health after rise consecutive passes or fall consecutive
// failures. It reports whether the health state changed.
func (r *Replica) RecordCheck(now time.Time, err error, rise, fall int) (changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkedAt = now
	if err == nil {
		r.fails = 0
		r.passes++
		// An outlier ejection for failed connections ends: this check
		// just made one, and got answers.
		back := r.out.ejected.Load() && r.out.local
		if back {
			r.returnLocked(now)
		}
		if !r.healthy.Load() && r.passes >= rise {
			r.setHealthyLocked(now, true)
			r.lastErr = ""
			return true
		}
		if r.healthy.Load() {
			r.lastErr = ""
			if back {
				r.changedAt = now
				return true
			}
		}
		return false
	}
	r.passes = 0
	r.fails++
	r.lastErr = err.Error()
	if r.healthy.Load() && r.fails >= fall {
		r.setHealthyLocked(now, false)
		return true
	}
	return false
}

// SetInitial sets r's health from a first check before serving, without
// waiting for rise or fall thresholds.
func (r *Replica) SetInitial(now time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkedAt = now
	r.passes, r.fails = 0, 0
	if err != nil {
		r.lastErr = err.Error()
		r.fails = 1
	} else {
		r.lastErr = ""
		r.passes = 1
	}
	r.setHealthyLocked(now, err == nil)
}

// Eject marks r unhealthy at once, as fall failed checks would; active
// checks bring it back. (Passive health, from client requests, is
// Outlier's, which never acts on one request.) It reports whether r was
// healthy before.
func (r *Replica) Eject(now time.Time, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.passes = 0
	r.lastErr = "passive: " + err.Error()
	if !r.healthy.Load() {
		return false
	}
	r.setHealthyLocked(now, false)
	return true
}

func (r *Replica) setHealthyLocked(now time.Time, h bool) {
	if r.healthy.Load() != h {
		r.changedAt = now
	}
	r.healthy.Store(h)
}

// Pool is a named, immutable set of replicas serving one model id. A new
// version gets a new Pool value; replicas may be shared with the old one.
type Pool struct {
	// Name is blue or green.
	Name string
	// Model is the model id the replicas serve.
	Model string
	// Replicas may be empty (a standby pool with nothing deployed).
	Replicas []*Replica
}

// InFlight sums the requests in flight on the pool's replicas.
func (p *Pool) InFlight() int64 {
	var n int64
	for _, r := range p.Replicas {
		n += r.InFlight()
	}
	return n
}

// Requests sums the requests sent to the pool's replicas since start.
func (p *Pool) Requests() uint64 {
	var n uint64
	for _, r := range p.Replicas {
		n += r.Requests()
	}
	return n
}

// MaxModelLen returns the context length the pool's healthy replicas
// list for its model on /v1/models (vLLM's max_model_len), the smallest
// if they differ (a request that fits it fits any of them); 0 when none
// of them gave one.
func (p *Pool) MaxModelLen() int64 {
	var n int64
	for _, r := range p.Replicas {
		if m := r.maxLen.Load(); m > 0 && r.Healthy() && (n == 0 || m < n) {
			n = m
		}
	}
	return n
}

// Lists reports whether every healthy replica of the pool listed name on
// its /v1/models at its last check, besides the pool's model: a LoRA
// adapter the pool serves, whichever replica a request goes to (one only
// some replicas list would fail on the others). False with no healthy
// replica.
func (p *Pool) Lists(name string) bool { return slices.Contains(p.Listed(), name) }

// Listed returns the ids every healthy replica of the pool listed on its
// /v1/models at its last check besides the pool's model (the LoRA
// adapters Lists accepts), in the order the first one listed them.
func (p *Pool) Listed() []string {
	var ids []string
	first := true
	for _, r := range p.Replicas {
		if !r.Healthy() {
			continue
		}
		l := r.listed.Load()
		if l == nil {
			return nil
		}
		if first {
			ids, first = slices.Clone(*l), false
			continue
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(*l, id) })
	}
	return ids
}

// HealthyCount returns how many of the pool's replicas are healthy.
func (p *Pool) HealthyCount() int {
	n := 0
	for _, r := range p.Replicas {
		if r.Healthy() {
			n++
		}
	}
	return n
}

// SetAuthorization puts the replica's own key (Authorization, from its
// pool's api_key_file) on h, for every request the gateway itself sends it
// (checks, metrics scrapes, warm-up, shadow copies, sleep and wake). No key:
// h is left as it is.
func (r *Replica) SetAuthorization(h http.Header) {
	if r.Authorization != "" {
		h["Authorization"] = []string{r.Authorization}
	}
}
