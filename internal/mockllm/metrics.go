package mockllm

// Prometheus metrics under vLLM's names, on a registry private to each Server.

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bucket bounds copied from vLLM's metrics.
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
		0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	itlBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
		0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	e2eBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
		30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

// metrics holds one Server's collectors.
type metrics struct {
	handler      http.Handler
	ttft         prometheus.Observer
	itl          prometheus.Observer
	e2e          prometheus.Observer
	queueTime    prometheus.Observer // waiting for a sequence slot
	runTime      prometheus.Observer // holding one (prefill and decode)
	genTokens    prometheus.Counter
	promptTokens prometheus.Counter
	success      map[string]prometheus.Counter // by finished_reason: stop, length, abort
}

// newMetrics registers vLLM's metrics for s on a fresh registry.
func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"model_name": s.cfg.Model}
	capacity := float64(s.cfg.MaxConcurrent)
	if capacity == 0 {
		capacity = nominalSeqs
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: labels})
		reg.MustRegister(h)
		return h
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
		reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}

	gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
		func() float64 { return float64(s.running.Load()) })
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
		func() float64 { return float64(s.waiting.Load()) })
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
		func() float64 {
			if s.kv != nil {
				return s.kv.usage()
			}
			return min(1, float64(s.running.Load())/capacity)
		})
	if s.kv != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vllm:prefix_cache_queries_total",
			Help: "Prefix cache queries, in terms of number of queried tokens.", ConstLabels: labels},
			func() float64 { return float64(s.kv.queries.Load()) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vllm:prefix_cache_hits_total",
			Help: "Prefix cache hits, in terms of number of cached tokens.", ConstLabels: labels},
			func() float64 { return float64(s.kv.hits.Load()) }))
	}

	success := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vllm:request_success_total", Help: "Count of successfully processed requests.", ConstLabels: labels,
	}, []string{"finished_reason"})
	reg.MustRegister(success)
	m := &metrics{
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		ttft: histogram("vllm:time_to_first_token_seconds",
			"Histogram of time to first token in seconds.", ttftBuckets),
		itl: histogram("vllm:inter_token_latency_seconds",
			"Histogram of inter-token latency in seconds.", itlBuckets),
		e2e: histogram("vllm:e2e_request_latency_seconds",
			"Histogram of e2e request latency in seconds.", e2eBuckets),
		queueTime: histogram("vllm:request_queue_time_seconds",
			"Histogram of time spent in WAITING phase for request.", e2eBuckets),
		runTime: histogram("vllm:request_inference_time_seconds",
			"Histogram of time spent in RUNNING phase for request.", e2eBuckets),
		genTokens:    counter("vllm:generation_tokens_total", "Number of generation tokens processed."),
		promptTokens: counter("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
		success:      map[string]prometheus.Counter{},
	}
	for _, reason := range []string{finishStop, finishLength, "abort"} {
		m.success[reason] = success.WithLabelValues(reason)
	}
	return m
}
