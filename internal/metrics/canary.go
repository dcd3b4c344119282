package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/api"
)

var (
	descPoolWeight = prometheus.NewDesc("cutover_pool_weight", "Percentage of new requests a pool gets: 100 for the live pool outside a canary, the step's split during one.", []string{"pool"}, nil)
	descCanaryStep = prometheus.NewDesc("cutover_canary_step", "Step (from 1) of the canary in progress; 0 when none.", nil, nil)
)

// collectWeights reports each pool's share of new requests and the
// canary step through g.
func collectWeights(st api.Status, g func(d *prometheus.Desc, v float64, labels ...string)) {
	for name, p := range st.Pools {
		w := b2f(p.Live) * 100
		if st.Weights != nil {
			w = float64(st.Weights[name])
		}
		g(descPoolWeight, w, name)
	}
	step := 0
	if d := st.Deployment; d != nil && d.Canary != nil && (d.Phase == "canary" || d.Phase == "ready") {
		step = d.Canary.Step
	}
	g(descCanaryStep, float64(step))
}
