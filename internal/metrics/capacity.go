package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/api"
)

// The capacity metrics: GPUs held by pool and state, from the state's
// accounting (the same figures on every gateway of a fleet), and the
// agents' reachability.
var (
	descGPUs       = prometheus.NewDesc("cutover_gpus", "GPUs the pool's replicas hold now (started through the agents, or pools.<pool>.gpus_per_replica), by state (live, candidate, retained_awake, retained_asleep, idle).", []string{"pool", "state"}, nil)
	descGPUSeconds = prometheus.NewDesc("cutover_gpu_seconds_total", "GPU-seconds the pool's replicas have held, by state, since the accounting began (persisted in the state).", []string{"pool", "state"}, nil)
	descAgentUp    = prometheus.NewDesc("cutover_agent_up", "1 when the agent answered its last check, 0 while it does not.", []string{"agent"}, nil)
)

// gpuStates lists every GPU state so that the GPU metrics are a complete
// set per pool.
var gpuStates = []string{"live", "candidate", "retained_awake", "retained_asleep", "idle"}

func collectCapacity(st api.Status, ch chan<- prometheus.Metric) {
	if c := st.Cost; c != nil {
		type key struct{ pool, state string }
		held, secs := map[key]int{}, map[key]float64{}
		for _, u := range c.Usage {
			held[key{u.Pool, u.State}] = u.GPUs
			secs[key{u.Pool, u.State}] = u.GPUSeconds
		}
		for name := range st.Pools {
			for _, s := range gpuStates {
				k := key{name, s}
				ch <- prometheus.MustNewConstMetric(descGPUs, prometheus.GaugeValue, float64(held[k]), name, s)
				ch <- prometheus.MustNewConstMetric(descGPUSeconds, prometheus.CounterValue, secs[k], name, s)
			}
		}
	}
	for _, a := range st.Agents {
		ch <- prometheus.MustNewConstMetric(descAgentUp, prometheus.GaugeValue, b2f(a.Up), a.Name)
	}
}
