package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/hook"
)

// stateCollector reads the control plane at scrape time: nothing on the
// request path, and no series to keep in sync by hand.
type stateCollector struct {
	src Source
	// prune drops the request series of replicas no longer in a pool; it
	// runs at each scrape, with the status the scrape reads.
	prune func(api.Status)
}

var (
	descLive      = prometheus.NewDesc("cutover_live_pool", "1 for the pool that receives client traffic, 0 for the other.", []string{"pool", "model"}, nil)
	descRevision  = prometheus.NewDesc("cutover_state_revision", "Revision of the persisted state; every transition increments it.", nil, nil)
	descSwitched  = prometheus.NewDesc("cutover_last_switch_timestamp_seconds", "Unix time of the last change of the live pool (0 if never).", nil, nil)
	descInFlight  = prometheus.NewDesc("cutover_requests_in_flight", "Requests and streams open on a replica.", []string{"pool", "replica"}, nil)
	descHealthy   = prometheus.NewDesc("cutover_replica_healthy", "1 when the replica may get new requests, 0 when health checks or passive ejection took it out.", []string{"pool", "replica"}, nil)
	descPhase     = prometheus.NewDesc("cutover_deployment_phase", "1 for the current (else latest) deployment's phase.", []string{"phase"}, nil)
	descDeadline  = prometheus.NewDesc("cutover_deployment_deadline_timestamp_seconds", "Unix time of the current deployment's deadline, by kind (progress, validation, canary_step, auto_promote, retention, drain).", []string{"kind"}, nil)
	descRetire    = prometheus.NewDesc("cutover_retire_failures", "Failed on_retire attempts of the deployment being retired (a GPU not freed yet).", nil, nil)
	descHookRuns  = prometheus.NewDesc("cutover_hook_runs_total", "Lifecycle hook runs by event and outcome.", []string{"event", "outcome"}, nil)
	descGateValue = prometheus.NewDesc("cutover_gate_value", "Current value of a validation gate.", []string{"gate"}, nil)
	descGateThr   = prometheus.NewDesc("cutover_gate_threshold", "Threshold of a validation gate.", []string{"gate"}, nil)
	descGateSamp  = prometheus.NewDesc("cutover_gate_samples", "Samples behind a validation gate's value.", []string{"gate"}, nil)
	descGateVerd  = prometheus.NewDesc("cutover_gate_verdict", "1 for a validation gate's current verdict (pass, fail, inconclusive).", []string{"gate", "verdict"}, nil)
)

// The engine metrics the llm balancer reads, per replica (none without it).
var (
	descEngineWaiting = prometheus.NewDesc("cutover_replica_engine_waiting", "Requests waiting in the replica's engine queue, as the llm balancer last read them.", []string{"pool", "replica"}, nil)
	descEngineRunning = prometheus.NewDesc("cutover_replica_engine_running", "Requests running in the replica's engine batch, as the llm balancer last read them.", []string{"pool", "replica"}, nil)
	descEngineKV      = prometheus.NewDesc("cutover_replica_kv_cache_usage", "The replica's KV-cache use (0-1), as the llm balancer last read it.", []string{"pool", "replica"}, nil)
	descEngineHitRate = prometheus.NewDesc("cutover_replica_prefix_cache_hit_rate", "The replica's prefix-cache hit rate (hit / queried tokens since its start), as the llm balancer last read it.", []string{"pool", "replica"}, nil)
	descEngineBatch   = prometheus.NewDesc("cutover_replica_engine_batch", "The replica's running batch as the llm balancer learned it: the most sequences seen running at once.", []string{"pool", "replica", "known"}, nil)
)

// The llm balancer's gateway queue, per pool (none before a request of the
// pool was held).
var (
	descQueueWaiting = prometheus.NewDesc("cutover_gateway_queue_waiting", "Requests the llm balancer holds at the gateway now, while every replica of the pool is full.", []string{"pool"}, nil)
	descQueueHeld    = prometheus.NewDesc("cutover_gateway_queue_requests_total", "Requests that left the llm balancer's gateway queue, by outcome: dispatched (to a replica that freed a slot), timed_out (then sent to the best replica), canceled (the client left); overflowed ones found the queue full.", []string{"pool", "outcome"}, nil)
	descQueueWait    = prometheus.NewDesc("cutover_gateway_queue_wait_seconds_total", "Time the requests that left the gateway queue were held there.", []string{"pool"}, nil)
)

// phases lists every phase so that the phase metric is a complete set.
var phases = []string{"pending", "warming", "validating", "canary", "ready", "promoted", "retiring", "completed", "failed", "aborted", "rolled_back"}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLive, descRevision, descSwitched, descInFlight, descHealthy, descPhase, descDeadline, descRetire, descHookRuns, descGateValue, descGateThr, descGateSamp, descGateVerd, descEngineWaiting, descEngineRunning, descEngineKV, descEngineHitRate, descEngineBatch, descQueueWaiting, descQueueHeld, descQueueWait, descPoolWeight, descCanaryStep, descGPUs, descGPUSeconds, descAgentUp} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	if c.prune != nil {
		c.prune(st)
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(descRevision, float64(st.Revision))
	sw := 0.0
	if !st.SwitchedAt.IsZero() {
		sw = float64(st.SwitchedAt.UnixNano()) / 1e9
	}
	g(descSwitched, sw)
	collectWeights(st, g)
	collectCapacity(st, ch)
	for name, p := range st.Pools {
		g(descLive, b2f(p.Live), name, p.Model)
		for _, r := range p.Replicas {
			g(descInFlight, float64(r.InFlight), name, r.URL)
			g(descHealthy, b2f(r.Healthy), name, r.URL)
			if e := r.Engine; e != nil {
				g(descEngineWaiting, e.Waiting, name, r.URL)
				g(descEngineRunning, e.Running, name, r.URL)
				g(descEngineKV, e.KVCacheUsage, name, r.URL)
				g(descEngineHitRate, e.PrefixCacheHitRate, name, r.URL)
				g(descEngineBatch, e.Batch, name, r.URL, strconv.FormatBool(e.BatchKnown))
			}
		}
		if q := p.GatewayQueue; q != nil {
			g(descQueueWaiting, float64(q.Waiting), name)
			for _, o := range []struct {
				outcome string
				n       uint64
			}{{"dispatched", q.Dispatched}, {"timed_out", q.TimedOut}, {"canceled", q.Canceled}, {"overflowed", q.Overflowed}} {
				ch <- prometheus.MustNewConstMetric(descQueueHeld, prometheus.CounterValue, float64(o.n), name, o.outcome)
			}
			ch <- prometheus.MustNewConstMetric(descQueueWait, prometheus.CounterValue, q.WaitSeconds, name)
		}
	}
	if d := st.Deployment; d != nil {
		for _, ph := range phases {
			g(descPhase, b2f(d.Phase == ph), ph)
		}
		if !d.Deadline.IsZero() {
			g(descDeadline, float64(d.Deadline.Unix()), d.DeadlineKind)
		}
		g(descRetire, retireFailures(d))
		for _, gate := range d.Gates {
			g(descGateValue, gate.Value, gate.Name)
			g(descGateThr, gate.Threshold, gate.Name)
			g(descGateSamp, float64(gate.Samples), gate.Name)
			for _, v := range []string{"pass", "fail", "inconclusive"} {
				g(descGateVerd, b2f(gate.Verdict == v), gate.Name, v)
			}
		}
	}
	// Every event and outcome, at 0 until it happens, so that an alert on
	// the first failed hook fires.
	runs := c.src.HookRuns()
	for _, ev := range hook.Events {
		for _, outcome := range hookOutcomes {
			if _, ok := runs[[2]string{ev, outcome}]; !ok {
				ch <- prometheus.MustNewConstMetric(descHookRuns, prometheus.CounterValue, 0, ev, outcome)
			}
		}
	}
	for k, n := range runs {
		ch <- prometheus.MustNewConstMetric(descHookRuns, prometheus.CounterValue, float64(n), k[0], k[1])
	}
}

// retireFailures is the retire-failures gauge: the failed on_retire
// attempts while d is retiring, 0 once retirement is over (completed,
// forced or not), so that the alert on it clears.
func retireFailures(d *api.Deployment) float64 {
	if d.Phase != "retiring" {
		return 0
	}
	return float64(d.RetireAttempts)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
