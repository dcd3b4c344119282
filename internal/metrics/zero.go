package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/api"
)

// The label values of counters that alerts use, so that each series exists
// at 0 before its first event: rate() and increase() over a series that
// appears with its first error see no increase, and an alert on it would
// miss that error.
var (
	// replicaErrorKinds are the cutover_upstream_errors_total kinds a
	// replica's requests can end with.
	replicaErrorKinds = []string{"upstream_unreachable", "upstream_timeout", "upstream_idle", "upstream_broken", "stream_error", "status_5xx"}
	// statusClasses are cutover_requests_total's code values.
	statusClasses = []string{"2xx", "3xx", "4xx", "5xx"}
	// fallbackReasons are cutover_proxy_fallback_connections_total's
	// reasons (proxy.Server's OnFallback).
	fallbackReasons = []string{"http_version", "target_form", "chunked_body", "expect", "https_replicas", "client"}
	// hookOutcomes are cutover_hook_runs_total's outcomes.
	hookOutcomes = []string{"ok", "failed"}
)

// seedFixed creates the series whose label sets do not depend on the pools.
func (m *Metrics) seedFixed() {
	for _, r := range fallbackReasons {
		m.fallback.WithLabelValues(r)
	}
}

// seed creates, at 0, the request, error and retry series of every replica
// in a pool of st and of each pool's "none" (a request no replica could
// take), unless they exist. prune removes those of replicas that leave.
func (m *Metrics) seed(st api.Status) {
	m.seedMu.Lock()
	defer m.seedMu.Unlock()
	for name, p := range st.Pools {
		if !m.seeded[[2]string{name, "none"}] {
			m.errors.WithLabelValues(name, "none", "no_healthy_replica")
			m.requests.WithLabelValues(name, "none", "5xx")
			m.retries.WithLabelValues(name)
			m.seeded[[2]string{name, "none"}] = true
		}
		for _, r := range p.Replicas {
			k := [2]string{name, r.URL}
			if m.seeded[k] {
				continue
			}
			for _, kind := range replicaErrorKinds {
				m.errors.WithLabelValues(name, r.URL, kind)
			}
			for _, code := range statusClasses {
				m.requests.WithLabelValues(name, r.URL, code)
			}
			m.seeded[k] = true
		}
	}
}

// unseed forgets the seeded replicas that are not in live, deleting their
// series; each pool's "none" stays.
func (m *Metrics) unseed(live map[[2]string]bool) {
	m.seedMu.Lock()
	defer m.seedMu.Unlock()
	for k := range m.seeded {
		if k[1] == "none" || live[k] {
			continue
		}
		delete(m.seeded, k)
		m.deleteReplicaSeries(k[0], k[1])
	}
}

// deleteReplicaSeries deletes every request series of one replica.
func (m *Metrics) deleteReplicaSeries(poolName, replica string) {
	labels := prometheus.Labels{"pool": poolName, "replica": replica}
	for _, v := range []*prometheus.MetricVec{m.requests.MetricVec, m.errors.MetricVec, m.duration.MetricVec,
		m.ttft.MetricVec, m.itl.MetricVec, m.tokens.MetricVec, m.ejected.MetricVec} {
		v.DeletePartialMatch(labels)
	}
}
