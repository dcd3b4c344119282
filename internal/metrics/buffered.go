package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterBufferedBytes exports what bytes reports, read at scrape time:
// the request body bytes the data plane holds in memory
// (proxy.Handler.BufferedBytes), against proxy.max_buffered_bytes.
func (m *Metrics) RegisterBufferedBytes(bytes func() int64) {
	m.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cutover_request_body_bytes_buffered",
		Help: "Request body bytes held in memory now; at proxy.max_buffered_bytes new requests get 503 overloaded."},
		func() float64 { return float64(bytes()) }))
}
