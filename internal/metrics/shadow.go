package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/internal/shadow"
)

var (
	descShadow     = prometheus.NewDesc("cutover_shadow_requests_total", "Shadow copies by outcome: sent, dropped (queue full), oversize (body over the limit), failed.", []string{"outcome"}, nil)
	descMismatches = prometheus.NewDesc("cutover_shadow_mismatches_total", "Deterministic shadow pairs whose text differed from the live answer.", nil, nil)
)

// shadowCollector reads a mirror's counters at scrape time.
type shadowCollector struct{ m *shadow.Mirror }

func (c shadowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descShadow
	ch <- descMismatches
}

func (c shadowCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Stats()
	for outcome, v := range map[string]uint64{"sent": s.Sent, "dropped": s.Dropped, "oversize": s.Oversize, "failed": s.Failed} {
		ch <- prometheus.MustNewConstMetric(descShadow, prometheus.CounterValue, float64(v), outcome)
	}
	ch <- prometheus.MustNewConstMetric(descMismatches, prometheus.CounterValue, float64(s.Mismatched))
}

// RegisterShadow exposes m's counters.
func (m *Metrics) RegisterShadow(mirror *shadow.Mirror) {
	m.register(shadowCollector{mirror})
}
