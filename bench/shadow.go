package main

// Scenario 5: the cost of shadow traffic. Two cutover instances in front of
// the same live backend: one with no deployment (shadow 0 %), one with a
// deployment held in its validating phase with validation.shadow.percent:
// 100, so that every live request is also copied to the candidate. Both get
// the same open-loop load in turn; the live latency is compared. The
// candidate backend runs at idle CPU priority: in production it is a
// green pool on GPU boxes of its own, and its work on the cores it shares
// here with the live path is not cutover's cost. A third run, the control,
// sends the load to the shadow-0 instance while the harness itself sends
// each copy to the candidate after the live answer: what is left of the
// candidate's work on the shared cores is then in both runs, and only
// cutover's mirroring differs.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// Names of the two cutover instances of scenario 5.
const (
	shadowOff    = "cutover-shadow-0"
	shadowOn     = "cutover-shadow-100"
	shadowCopies = "cutover-shadow-0+copies" // the control: the harness sends the copies
)

// shadowValidation holds a deployment in validating: copies to the candidate
// for every live request, and a minimum duration and deadline far beyond
// the run so that it neither passes nor times out. The latency gates are
// off: the candidate runs at idle priority (it stands for other machines),
// so its latency here says nothing about a real candidate's, and a gate
// failing on it would end the mirroring mid-run.
const shadowValidation = `rollout:
  warmup:
    requests: []
validation:
  shadow:
    percent: 100
  deadline: 2h
  min_duration: 1h
  gates:
    latency_p95_ratio: {enabled: false}
    ttft_p95_ratio: {enabled: false}
    ttft_p95_ms: {enabled: false}
    tokens_per_second_ratio: {enabled: false}
`

// shadowSample is one fixed-rate run against one instance.
type shadowSample struct {
	Target   string `json:"target"`
	Round    int    `json:"round"`
	Requests int    `json:"requests"`
	Failed   int    `json:"failed"`
	Dropped  int    `json:"dropped"` // not sent: every client slot busy
	P50Ms    num    `json:"p50_ms"`
	P99Ms    num    `json:"p99_ms"`
	// CPUPer1k is cutover's CPU seconds per 1000 live requests.
	CPUPer1k num `json:"cpu_seconds_per_1k"`
	// Copies is how many requests the candidate answered during the run.
	Copies int `json:"copies"`
	// Phase is the deployment's phase after the run ("" without one).
	Phase string `json:"phase,omitempty"`
	// OtherCores is the CPU that processes outside the harness used during
	// the run (cores): the machine's noise.
	OtherCores num `json:"other_cores"`
}

// shadowResult is scenario 5.
type shadowResult struct {
	Rate    float64 `json:"rate_per_second"`
	Seconds float64 `json:"seconds_per_run"`
	// Candidate is the candidate backend's CPU priority: "idle"
	// (SCHED_IDLE, standing for machines of its own) or "normal" where
	// that cannot be set.
	Candidate string `json:"candidate_priority"`
	// PooledP99Ms is each instance's p99 over the requests of every
	// measured round together: steadier than one round's p99, which rests
	// on its 1 % slowest requests alone.
	PooledP99Ms map[string]num `json:"pooled_p99_ms"`
	Samples     []shadowSample `json:"samples"`
}

// runShadow runs scenario 5.
func runShadow(ctx context.Context, e *env, o *options) (*shadowResult, error) {
	var ps procSet
	defer func() {
		if err := ps.stopAll(); err != nil {
			e.logf("shadow: %v", err)
		}
	}()
	live, err := e.startMock(ctx, &ps, "mock-shadow-live", mockOpts{tokens: 16})
	if err != nil {
		return nil, err
	}
	cand, err := e.startMock(ctx, &ps, "mock-shadow-candidate", mockOpts{tokens: 16, otherBox: true})
	if err != nil {
		return nil, err
	}
	off, err := e.startCutover(ctx, &ps, shadowOff, pools{blue: live}, "")
	if err != nil {
		return nil, err
	}
	off.name = shadowOff
	on, err := e.startCutover(ctx, &ps, shadowOn, pools{blue: live}, shadowValidation)
	if err != nil {
		return nil, err
	}
	on.name = shadowOn
	d, err := on.admin.Deploy(ctx, api.DeployRequest{Model: benchModel, Replicas: []string{"http://" + cand}})
	if err != nil {
		return nil, fmt.Errorf("shadow: deploy the candidate: %w", err)
	}
	if err := waitPhase(ctx, on.admin, d.Deployment.ID, "validating", 30*time.Second); err != nil {
		return nil, err
	}
	res := &shadowResult{Rate: o.shadowRate, Seconds: o.shadowDuration.Seconds(), Candidate: "normal"}
	if idlePriority() != nil {
		res.Candidate = "idle"
	}
	control := *off
	control.name = shadowCopies
	pooled := map[string][]float64{}
	defer func() {
		res.PooledP99Ms = map[string]num{}
		for name, lat := range pooled {
			res.PooledP99Ms[name] = num(percentile(lat, 99))
		}
	}()
	for round := 0; round <= o.rounds; round++ { // round 0 warms up
		for _, t := range []*target{off, &control, on} {
			copyTo := ""
			if t == &control {
				copyTo = "http://" + cand + "/v1/chat/completions"
			}
			s, lat, err := shadowRun(ctx, t, o, cand, copyTo)
			if err != nil {
				return res, fmt.Errorf("shadow round %d, %s: %w", round, t.name, err)
			}
			if t == on {
				dep, err := on.admin.Deployment(ctx, d.Deployment.ID)
				if err != nil {
					return res, fmt.Errorf("shadow: deployment %s: %w", d.Deployment.ID, err)
				}
				s.Phase = dep.Phase
			}
			if round == 0 {
				continue
			}
			s.Round = round
			res.Samples = append(res.Samples, s)
			pooled[t.name] = append(pooled[t.name], lat...)
			e.logf("shadow round %d %-18s p50 %6.3f ms p99 %6.3f ms  cpu %.3f s/1k  %d requests, %d copies, %d failed, %d dropped %s",
				s.Round, s.Target, float64(s.P50Ms), float64(s.P99Ms), float64(s.CPUPer1k), s.Requests, s.Copies, s.Failed, s.Dropped, s.Phase)
		}
	}
	return res, nil
}

// waitPhase polls the deployment until it reaches phase.
func waitPhase(ctx context.Context, c *api.Client, id, phase string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d, err := c.Deployment(ctx, id)
		if err != nil {
			return fmt.Errorf("deployment %s: %w", id, err)
		}
		if d.Phase == phase {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s is %s after %s, want %s (%s)", id, d.Phase, timeout, phase, d.Reason)
		}
		sleepCtx(ctx, 100*time.Millisecond)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("deployment %s: waiting for %s: %w", id, phase, err)
		}
	}
}

// shadowRun sends o.shadowRate requests per second for o.shadowDuration
// (open loop: a request is due at its time whether or not the previous
// ones have returned) and measures their latency. With copyTo set, each
// request that succeeded is then sent there too, unmeasured, as cutover's
// mirror would.
func shadowRun(ctx context.Context, t *target, o *options, cand, copyTo string) (shadowSample, []float64, error) {
	s := shadowSample{Target: t.name, P50Ms: nan, P99Ms: nan, CPUPer1k: nan, OtherCores: nan}
	const slots = 256
	tr := &http.Transport{MaxIdleConnsPerHost: slots, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctr := &http.Transport{MaxIdleConnsPerHost: slots, DisableCompression: true}
	defer ctr.CloseIdleConnections()
	copyClient := &http.Client{Transport: ctr, Timeout: 10 * time.Second}
	url := "http://" + t.addr + "/v1/chat/completions"
	body := chatBody(16, false, "Say hello")
	copies0, err := completedRequests(ctx, cand)
	if err != nil {
		return s, nil, err
	}
	cpu0, err := t.grp.cpuSeconds()
	if err != nil {
		return s, nil, err
	}
	snap0 := snapCPU()
	var (
		mu   sync.Mutex
		lat  []float64
		wg   sync.WaitGroup
		sem  = make(chan struct{}, slots)
		n    = int(o.shadowRate * o.shadowDuration.Seconds())
		gap  = time.Duration(float64(time.Second) / o.shadowRate)
		zero = time.Now()
	)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sleepCtx(ctx, time.Until(zero.Add(time.Duration(i)*gap)))
		select {
		case sem <- struct{}{}:
		default:
			s.Dropped++
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			_, err := fetch(ctx, client, http.MethodPost, url, body)
			ok := err == nil
			d := time.Since(start)
			mu.Lock()
			if ok {
				lat = append(lat, ms(d))
			} else {
				s.Failed++
			}
			mu.Unlock()
			if ok && copyTo != "" {
				_, _ = fetch(ctx, copyClient, http.MethodPost, copyTo, body)
			}
		})
	}
	wg.Wait()
	s.OtherCores = otherCores(snap0, snapCPU())
	cpu1, err := t.grp.cpuSeconds()
	if err != nil {
		return s, nil, err
	}
	time.Sleep(200 * time.Millisecond) // copies finish after the live answer
	copies1, err := completedRequests(ctx, cand)
	if err != nil {
		return s, nil, err
	}
	s.Requests, s.Copies = len(lat)+s.Failed, copies1-copies0
	s.P50Ms, s.P99Ms = num(percentile(lat, 50)), num(percentile(lat, 99))
	if s.Requests > 0 {
		s.CPUPer1k = num((cpu1 - cpu0) / float64(s.Requests) * 1000)
	}
	return s, lat, ctx.Err()
}

// completedRequests reads the backend's vllm:request_success_total, summed
// over finish reasons.
func completedRequests(ctx context.Context, addr string) (int, error) {
	b, err := fetch(ctx, http.DefaultClient, http.MethodGet, "http://"+addr+"/metrics", "")
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	return sumMetric(b, "vllm:request_success_total"), nil
}

// sumMetric sums the samples of a Prometheus text-format metric.
func sumMetric(text []byte, name string) int {
	total := 0.0
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			total += v
		}
	}
	return int(total)
}
