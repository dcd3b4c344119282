package main

// Scenario 1: small non-streamed chat completions at saturation, driven by
// wrk with a fixed number of connections.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// satSample is one wrk run against one target.
type satSample struct {
	Target   string `json:"target"`
	Round    int    `json:"round"`
	Requests int    `json:"requests"`
	Errors   int    `json:"errors"` // non-2xx answers and socket errors
	RPS      num    `json:"rps"`
	P50Ms    num    `json:"p50_ms"`
	P99Ms    num    `json:"p99_ms"`
	// CPUSeconds is the proxy's user+system CPU time during the run; NaN for
	// direct.
	CPUSeconds num `json:"cpu_seconds"`
	CPUPer1k   num `json:"cpu_seconds_per_1k"`
	// OtherCores is the CPU that processes outside the harness used during
	// the run (cores): the machine's noise.
	OtherCores num `json:"other_cores"`
}

// satResult is scenario 1.
type satResult struct {
	Connections int         `json:"connections"`
	Threads     int         `json:"wrk_threads"`
	Seconds     int         `json:"seconds_per_run"`
	Samples     []satSample `json:"samples"`
}

// wrkScript is wrk's Lua script: a small chat completion, and a summary
// line the harness parses (latencies in µs).
const wrkScript = `wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format('BENCHJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`

// wrkSummary is the line the script prints.
type wrkSummary struct {
	Requests   int     `json:"requests"`
	DurationUS float64 `json:"duration_us"`
	Connect    int     `json:"connect"`
	Read       int     `json:"read"`
	Write      int     `json:"write"`
	Status     int     `json:"status"`
	Timeout    int     `json:"timeout"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
}

// parseWrk finds the BENCHJSON line in wrk's output.
func parseWrk(out string) (wrkSummary, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if j, ok := strings.CutPrefix(sc.Text(), "BENCHJSON "); ok {
			var s wrkSummary
			if err := json.Unmarshal([]byte(j), &s); err != nil {
				return s, fmt.Errorf("wrk summary %q: %w", j, err)
			}
			return s, nil
		}
	}
	return wrkSummary{}, fmt.Errorf("no summary in wrk's output: %q", out)
}

// runSaturation runs scenario 1: a warm-up run per target, then rounds of
// interleaved measured runs.
func runSaturation(ctx context.Context, e *env, o *options) (*satResult, error) {
	var ps procSet
	defer func() {
		if err := ps.stopAll(); err != nil {
			e.logf("saturation: %v", err)
		}
	}()
	mock, err := e.startMock(ctx, &ps, "mock-saturation", mockOpts{tokens: 16})
	if err != nil {
		return nil, err
	}
	ts, err := e.startTargets(ctx, &ps, "saturation", pools{blue: mock}, o.satConns)
	if err != nil {
		return nil, err
	}
	// The same load through cutover with model_name on, as users run it:
	// every body's model is rewritten on the way.
	rw, err := e.startCutover(ctx, &ps, "cutover-saturation-rewrite", pools{blue: mock}, "model_name: "+clientModel+"\n")
	if err != nil {
		return nil, err
	}
	rw.name = targetCutoverRewrite
	ts = append(ts, rw)
	scripts := map[string]string{}
	for _, m := range []string{benchModel, clientModel} {
		p := filepath.Join(e.dir, "chat-"+m+".lua")
		if err := os.WriteFile(p, fmt.Appendf(nil, wrkScript, strconv.Quote(chatBodyFor(m, 16, false, "Say hello"))), 0o644); err != nil {
			return nil, fmt.Errorf("write wrk script: %w", err)
		}
		scripts[m] = p
	}
	scriptFor := func(t *target) string {
		if t.name == targetCutoverRewrite {
			return scripts[clientModel]
		}
		return scripts[benchModel]
	}
	res := &satResult{Connections: o.satConns, Threads: o.wrkThreads, Seconds: o.satSeconds}
	for round := -1; round < o.rounds; round++ {
		for _, t := range roundOrder(ts, round) {
			secs := o.satSeconds
			if round < 0 {
				if o.warmupSeconds <= 0 {
					continue
				}
				secs = o.warmupSeconds
			}
			s, err := e.wrkRun(ctx, t, scriptFor(t), o, secs)
			if err != nil {
				return res, fmt.Errorf("saturation round %d, %s: %w", round+1, t.name, err)
			}
			if round < 0 {
				continue
			}
			s.Round = round + 1
			res.Samples = append(res.Samples, s)
			e.logf("saturation round %d %-15s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %.3f s/1k req",
				s.Round, s.Target, float64(s.RPS), float64(s.P50Ms), float64(s.P99Ms), float64(s.CPUPer1k))
		}
	}
	return res, nil
}

// wrkRun runs wrk for secs against t, reading t's CPU time before and after.
func (e *env) wrkRun(ctx context.Context, t *target, script string, o *options, secs int) (satSample, error) {
	s := satSample{Target: t.name, CPUSeconds: nan, CPUPer1k: nan}
	snap0 := snapCPU()
	var cpu0 float64
	if t.grp != nil {
		var err error
		if cpu0, err = t.grp.cpuSeconds(); err != nil {
			return s, err
		}
	}
	out, err := runTool(ctx, time.Duration(secs)*time.Second+30*time.Second, e.wrk,
		"-t", strconv.Itoa(o.wrkThreads), "-c", strconv.Itoa(o.satConns), "-d", strconv.Itoa(secs)+"s",
		"--latency", "-s", script, "http://"+t.addr+"/v1/chat/completions")
	if err != nil {
		return s, err
	}
	s.OtherCores = otherCores(snap0, snapCPU())
	if t.grp != nil {
		cpu1, err := t.grp.cpuSeconds()
		if err != nil {
			return s, err
		}
		s.CPUSeconds = num(cpu1 - cpu0)
	}
	w, err := parseWrk(out)
	if err != nil {
		return s, err
	}
	s.fill(w, t.grp != nil)
	if s.Errors > 0 {
		e.logf("saturation: %s: %d errors in %d requests; its figures count the successes only", t.name, s.Errors, w.Requests)
	}
	return s, nil
}

// fill sets s's figures from wrk's summary. Throughput and CPU per request
// count the answers that succeeded: wrk's total also holds non-2xx answers
// (errors.status) and timeouts, and a proxy answering fast errors must not
// come out ahead. withCPU: s.CPUSeconds was measured.
func (s *satSample) fill(w wrkSummary, withCPU bool) {
	s.Requests = w.Requests
	s.Errors = w.Connect + w.Read + w.Write + w.Status + w.Timeout
	ok := w.Requests - w.Status - w.Timeout
	if w.DurationUS > 0 && ok > 0 {
		s.RPS = num(float64(ok) / (w.DurationUS / 1e6))
	}
	s.P50Ms, s.P99Ms = num(w.P50US/1000), num(w.P99US/1000)
	if ok > 0 && withCPU {
		s.CPUPer1k = num(float64(s.CPUSeconds) / float64(ok) * 1000)
	}
}
