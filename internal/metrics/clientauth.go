package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/internal/auth"
)

var (
	descKeyRequests = prometheus.NewDesc("cutover_client_requests_total",
		"Client requests authenticated with an API key of auth.api_keys_file, by key id (never the key).", []string{"key"}, nil)
	descKeyForbidden = prometheus.NewDesc("cutover_client_forbidden_total",
		"Client requests refused (403 model_not_allowed) for a model their key may not use, by key id.", []string{"key"}, nil)
	descUnauthorized = prometheus.NewDesc("cutover_client_unauthorized_total",
		"Client requests refused (401 invalid_api_key) for a missing or unknown API key.", nil, nil)
)

// clientAuthCollector reads the client keys' counters at scrape time.
type clientAuthCollector struct{ k *auth.Keys }

func (c clientAuthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descKeyRequests
	ch <- descKeyForbidden
	ch <- descUnauthorized
}

func (c clientAuthCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.k.Counts()
	for id, v := range s.Requests {
		ch <- prometheus.MustNewConstMetric(descKeyRequests, prometheus.CounterValue, float64(v), id)
	}
	for id, v := range s.Forbidden {
		ch <- prometheus.MustNewConstMetric(descKeyForbidden, prometheus.CounterValue, float64(v), id)
	}
	ch <- prometheus.MustNewConstMetric(descUnauthorized, prometheus.CounterValue, float64(s.Rejected))
}

// RegisterClientAuth exposes the client keys' counters, every key id at 0
// from the start.
func (m *Metrics) RegisterClientAuth(k *auth.Keys) { m.register(clientAuthCollector{k}) }
