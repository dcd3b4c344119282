// Package metrics holds cutover's Prometheus collectors: data-plane
// observations per pool and replica, and control-plane state read at
// scrape time.
package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// Metrics is cutover's registry and its data-plane collectors. It
// implements proxy.Observer.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	retries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	ttft     *prometheus.HistogramVec
	itl      *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	fallback *prometheus.CounterVec
	// writeTimeouts counts clients cut by proxy.client_write_timeout.
	writeTimeouts *prometheus.CounterVec
	ejected       *prometheus.CounterVec
	overflow      *prometheus.CounterVec

	handles sync.Map // *pool.Replica, or the pool name for requests with none -> *replicaHandles
	// lastHandles is the replica's handles looked up last (most requests
	// go where one went before), found without the map's hashing; prune
	// marks the ones it deletes (replicaHandles.pruned) and clears it.
	lastHandles atomic.Pointer[replicaHandles]
	cols        []prometheus.Collector

	src    Source
	seedMu sync.Mutex
	seeded map[[2]string]bool // pool, replica: series created at 0 (zero.go); guarded by seedMu
}

// Source is the control plane as the metrics see it, read at scrape time.
type Source interface {
	Status() api.Status
	// HookRuns counts hook runs by event and outcome (ok, failed).
	HookRuns() map[[2]string]uint64
}

var (
	latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	ttftBuckets    = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	itlBuckets     = []float64{.001, .0025, .005, .01, .02, .035, .05, .075, .1, .25, .5, 1}
)

// New returns the metrics, with the control-plane collector reading src.
func New(src Source) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), src: src, seeded: map[[2]string]bool{}}
	pr := []string{"pool", "replica"}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_requests_total",
		Help: "Client requests proxied, by pool, replica and status class (2xx..5xx)."}, append(pr, "code"))
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_upstream_errors_total",
		Help: "Failed requests by kind: upstream_unreachable, upstream_timeout, upstream_idle, upstream_broken, no_healthy_replica, stream_error (an error event inside a 200 stream), status_5xx."}, append(pr, "kind"))
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_retries_total",
		Help: "Requests retried on another replica of the same pool."}, []string{"pool"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cutover_request_duration_seconds",
		Help: "Time from a request's arrival to the end of its response, streams included.", Buckets: latencyBuckets}, append(pr, "stream"))
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cutover_time_to_first_token_seconds",
		Help: "Time from a streamed request's arrival to its first token chunk.", Buckets: ttftBuckets}, pr)
	m.itl = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cutover_inter_token_latency_seconds",
		Help: "Mean time between output tokens of each stream: (duration - TTFT) / (tokens - 1).", Buckets: itlBuckets}, pr)
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_output_tokens_total",
		Help: "Output tokens: usage.completion_tokens when the response has it, else counted stream chunks."}, pr)
	m.fallback = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_proxy_fallback_connections_total",
		Help: "Client connections the data plane's own loop handed to the net/http server, by reason: http_version (not HTTP/1.1), target_form, chunked_body, expect, host, line_folding, https_replicas, client (proxy.client: net/http)."}, []string{"reason"})
	m.writeTimeouts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_client_write_timeouts_total",
		Help: "Clients cut because they accepted no byte of an answer for proxy.client_write_timeout; the replica's request was cancelled."}, []string{"pool"})
	m.ejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_outlier_ejections_total",
		Help: "Replicas taken out of rotation by outlier detection, by reason: consecutive_failures, failure_rate."}, append(pr, "reason"))
	m.overflow = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cutover_outlier_ejections_overflow_total",
		Help: "Ejections outlier detection wanted but health.outlier.max_ejection_percent refused: the failing replica stayed in rotation."}, []string{"pool"})
	m.register(m.requests, m.errors, m.retries, m.duration, m.ttft, m.itl, m.tokens, m.fallback, m.writeTimeouts, m.ejected, m.overflow,
		&stateCollector{src: src, prune: m.prune})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.seedFixed()
	return m
}

func (m *Metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.cols = append(m.cols, cs...)
}

// Fallback counts a client connection handed to the net/http server
// (proxy.Server's OnFallback).
func (m *Metrics) Fallback(reason string) { m.fallback.WithLabelValues(reason).Inc() }

// OutlierEjected counts an ejection by outlier detection (pool.Outlier's
// OnEject).
func (m *Metrics) OutlierEjected(poolName string, r *pool.Replica, reason string) {
	m.ejected.WithLabelValues(poolName, r.Name, reason).Inc()
}

// OutlierOverflow counts an ejection refused by max_ejection_percent
// (pool.Outlier's OnOverflow).
func (m *Metrics) OutlierOverflow(poolName string, _ *pool.Replica) {
	m.overflow.WithLabelValues(poolName).Inc()
}

// Registry is where further collectors (validation, shadow) register.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format. Before each
// scrape it creates, at 0, the series of replicas that joined a pool.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.seed(m.src.Status())
		h.ServeHTTP(w, r)
	})
}

// replicaHandles are one replica's pre-resolved series, so the hot path
// does no label hashing.
type replicaHandles struct {
	pool, replica string                // the label values ("none": no replica)
	code          [6]prometheus.Counter // index status/100; 0 unused
	dur           [2]prometheus.Observer
	ttft          prometheus.Observer
	itl           prometheus.Observer
	tokens        prometheus.Counter
	retries       prometheus.Counter
	errorsMu      sync.Mutex
	errors        map[string]prometheus.Counter
	r             *pool.Replica // the key, nil for a pool's "none"
	pruned        atomic.Bool   // prune deleted it: not to be taken from lastHandles
}

func (m *Metrics) handlesFor(poolName string, r *pool.Replica) *replicaHandles {
	// A replica belongs to one pool, so it keys its handles alone; a
	// request with no replica (no healthy one) is keyed by its pool.
	if h := m.lastHandles.Load(); r != nil && h != nil && h.r == r && !h.pruned.Load() {
		return h
	}
	var key any = r
	if r == nil {
		key = poolName
	}
	if v, ok := m.handles.Load(key); ok {
		h := v.(*replicaHandles)
		if r != nil {
			m.lastHandles.Store(h)
		}
		return h
	}
	name := "none"
	if r != nil {
		name = r.Name
	}
	h := &replicaHandles{pool: poolName, replica: name, errors: map[string]prometheus.Counter{}, r: r}
	for c := 1; c <= 5; c++ {
		h.code[c] = m.requests.WithLabelValues(poolName, name, string(rune('0'+c))+"xx")
	}
	h.dur[0] = m.duration.WithLabelValues(poolName, name, "false")
	h.dur[1] = m.duration.WithLabelValues(poolName, name, "true")
	h.ttft = m.ttft.WithLabelValues(poolName, name)
	h.itl = m.itl.WithLabelValues(poolName, name)
	h.tokens = m.tokens.WithLabelValues(poolName, name)
	h.retries = m.retries.WithLabelValues(poolName)
	actual, _ := m.handles.LoadOrStore(key, h)
	return actual.(*replicaHandles)
}

// prune forgets the replicas no longer in any pool of st (a retired pool,
// a deployment's replaced replicas): their handles and their series go, so
// that a long-lived gateway's metrics do not grow with every deployment.
// Series of replicas still in a pool, and each pool's "none", stay.
func (m *Metrics) prune(st api.Status) {
	live := map[[2]string]bool{}
	for name, p := range st.Pools {
		for _, r := range p.Replicas {
			live[[2]string{name, r.URL}] = true
		}
	}
	m.handles.Range(func(key, v any) bool {
		h := v.(*replicaHandles)
		if h.replica == "none" || live[[2]string{h.pool, h.replica}] {
			return true
		}
		h.pruned.Store(true)
		m.handles.Delete(key)
		m.lastHandles.CompareAndSwap(h, nil)
		m.deleteReplicaSeries(h.pool, h.replica)
		return true
	})
	m.unseed(live)
}

func (h *replicaHandles) errorCounter(m *Metrics, poolName, replica, kind string) prometheus.Counter {
	h.errorsMu.Lock()
	defer h.errorsMu.Unlock()
	c, ok := h.errors[kind]
	if !ok {
		c = m.errors.WithLabelValues(poolName, replica, kind)
		h.errors[kind] = c
	}
	return c
}

// Observe records one request. It implements proxy.Observer.
func (m *Metrics) Observe(o *proxy.Observation) {
	h := m.handlesFor(o.Pool, o.Replica)
	if c := o.Status / 100; c >= 1 && c <= 5 {
		h.code[c].Inc()
	}
	stream := 0
	if o.Stream {
		stream = 1
	}
	h.dur[stream].Observe(o.Duration.Seconds())
	if o.Stream && o.Status == http.StatusOK && o.Bytes > 0 {
		h.ttft.Observe(o.TTFT.Seconds())
		if o.Tokens > 1 {
			h.itl.Observe((o.Duration - o.TTFT).Seconds() / float64(o.Tokens-1))
		}
	}
	if o.Tokens > 0 {
		h.tokens.Add(float64(o.Tokens))
	}
	if o.Retried {
		h.retries.Inc()
	}
	kind := o.Error
	switch {
	case kind == "client_closed":
		kind = ""
	case kind == "client_write_timeout": // the client's doing, not the replica's
		m.writeTimeouts.WithLabelValues(o.Pool).Inc()
		kind = ""
	case kind == "" && o.StreamError:
		kind = "stream_error"
	case kind == "" && o.Status >= 500:
		kind = "status_5xx"
	}
	if kind != "" {
		replica := "none"
		if o.Replica != nil {
			replica = o.Replica.Name
		}
		h.errorCounter(m, o.Pool, replica, kind).Inc()
	}
}

var _ proxy.Observer = (*Metrics)(nil)
