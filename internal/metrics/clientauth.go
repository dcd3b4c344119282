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

// clientAuthCollector reads the client keys' counters at scrape time,
// from the keys k returns (none when it returns nil).
type clientAuthCollector struct{ k func() *auth.Keys }

func (c clientAuthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descKeyRequests
	ch <- descKeyForbidden
	ch <- descUnauthorized
}

func (c clientAuthCollector) Collect(ch chan<- prometheus.Metric) {
	k := c.k()
	if k == nil {
		return
	}
	s := k.Counts()
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
func (m *Metrics) RegisterClientAuth(k *auth.Keys) {
	m.register(clientAuthCollector{func() *auth.Keys { return k }})
}

// RegisterClientAuthFunc exposes the counters of the client keys current
// returns at each scrape (a keys file a reload reads again): none while it
// returns nil (client auth off).
func (m *Metrics) RegisterClientAuthFunc(current func() *auth.Keys) {
	m.register(clientAuthCollector{current})
}
