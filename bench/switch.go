package main

// Scenario 4: switch propagation under load. Clients send small requests
// without pause; the harness switches the proxy from one pool to the other
// and measures, from the switch call's return, until the last request that
// started after it and still reached the old pool.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// switchSample is one round of switches through one proxy.
type switchSample struct {
	Target   string `json:"target"`
	Round    int    `json:"round"`
	Switches int    `json:"switches"`
	// PropagationMs holds, per switch, the start of the last request that
	// still reached the old pool minus the switch call's return: <= 0 when
	// no request that started after the return reached the old pool (then
	// it is how long before the return the last old-pool request started).
	PropagationMs []num `json:"propagation_ms"`
	MedianMs      num   `json:"median_ms"`
	MaxMs         num   `json:"max_ms"`
	// CallMs is the median duration of the switch call itself.
	CallMs   num `json:"call_ms"`
	Requests int `json:"requests"`
	Failed   int `json:"failed"` // errors and non-200 answers during the round
	// Stale counts the requests that started after a switch call returned
	// and still reached the old pool (all switches of the round).
	Stale int `json:"stale"`
	// OtherCores is the CPU that processes outside the harness used during
	// the run (cores): the machine's noise.
	OtherCores num `json:"other_cores"`
}

// switchResult is scenario 4.
type switchResult struct {
	Clients int `json:"clients"`
	// Methods says how each proxy is switched.
	Methods map[string]string `json:"methods"`
	Samples []switchSample    `json:"samples"`
}

// switchMethods describes each proxy's switch, for the report.
var switchMethods = map[string]string{
	targetNginx:   "rewrite the upstream include, `nginx -s reload` (the seed's manual method)",
	targetHAProxy: "Runtime API `set map` on the admin socket (use_backend from a map)",
	targetCutover: "`POST /api/v1/promote` on the admin API",
}

// poolRecord is one request of the load.
type poolRecord struct {
	start, end int64 // monotonic ns since the round's origin
	pool       string
	ok         bool
}

// runSwitch runs scenario 4.
func runSwitch(ctx context.Context, e *env, o *options) (*switchResult, error) {
	var ps procSet
	defer func() {
		if err := ps.stopAll(); err != nil {
			e.logf("switch: %v", err)
		}
	}()
	blue, err := e.startMock(ctx, &ps, "mock-switch-blue", mockOpts{tokens: 2})
	if err != nil {
		return nil, err
	}
	green, err := e.startMock(ctx, &ps, "mock-switch-green", mockOpts{tokens: 2})
	if err != nil {
		return nil, err
	}
	// Both pools serve the same model id (nginx and HAProxy cannot rewrite
	// the request's model); the random prefix of each backend's response
	// ids tells them apart.
	prefixes := map[string]string{}
	for pool, addr := range map[string]string{"blue": blue, "green": green} {
		p, err := idPrefix(ctx, addr)
		if err != nil {
			return nil, err
		}
		prefixes[p] = pool
	}
	ts, err := e.startTargets(ctx, &ps, "switch", pools{blue: blue, green: green}, o.switchClients)
	if err != nil {
		return nil, err
	}
	ts = ts[1:] // direct has no pools to switch
	res := &switchResult{Clients: o.switchClients, Methods: switchMethods}
	live := map[string]string{}
	for _, t := range ts {
		live[t.name] = "blue"
	}
	for round := 1; round <= o.rounds; round++ {
		for _, t := range ts {
			s, err := switchRound(ctx, t, o, prefixes, live)
			if err != nil {
				return res, fmt.Errorf("switch round %d, %s: %w", round, t.name, err)
			}
			s.Round = round
			res.Samples = append(res.Samples, s)
			e.logf("switch round %d %-8s propagation median %8.3f ms max %8.3f ms  call %.3f ms  %d requests, %d failed",
				s.Round, s.Target, float64(s.MedianMs), float64(s.MaxMs), float64(s.CallMs), s.Requests, s.Failed)
		}
	}
	return res, nil
}

// idPrefix asks the backend at addr for a completion and returns the part
// of its id that is the same for every answer of that process.
func idPrefix(ctx context.Context, addr string) (string, error) {
	b, err := fetch(ctx, http.DefaultClient, http.MethodPost, "http://"+addr+"/v1/chat/completions", chatBody(1, false, "who are you"))
	if err != nil {
		return "", fmt.Errorf("ask %s for its id prefix: %w", addr, err)
	}
	p := responsePrefix(b)
	if p == "" {
		return "", fmt.Errorf("ask %s for its id prefix: no id in %q", addr, b)
	}
	return p, nil
}

// responsePrefix returns "chatcmpl-" and the 16 hex digits a backend puts
// at the start of every response id (the id's random half), or "".
func responsePrefix(body []byte) string {
	id := completionID(body)
	const n = len("chatcmpl-") + 16
	if len(id) < n {
		return ""
	}
	return id[:n]
}

// switchRound keeps o.switchClients clients busy on t while switching
// o.switches times between the pools.
func switchRound(ctx context.Context, t *target, o *options, prefixes, live map[string]string) (switchSample, error) {
	s := switchSample{Target: t.name, Switches: o.switches, MedianMs: nan, MaxMs: nan, CallMs: nan, OtherCores: nan}
	snap0 := snapCPU()
	origin := time.Now()
	since := func() int64 { return int64(time.Since(origin)) }
	tr := &http.Transport{MaxIdleConnsPerHost: o.switchClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + t.addr + "/v1/chat/completions"
	body := chatBody(2, false, "which pool")

	var stop atomic.Bool
	var wg sync.WaitGroup
	records := make([][]poolRecord, o.switchClients)
	for i := range records {
		wg.Go(func() {
			recs := make([]poolRecord, 0, 4096)
			for n := 0; !stop.Load() && n < maxSwitchRequests; n++ {
				r := poolRecord{start: since()}
				r.pool, r.ok = postForPool(ctx, client, url, body, prefixes)
				r.end = since()
				recs = append(recs, r)
			}
			records[i] = recs
		})
	}
	type sw struct {
		from                  string
		callStart, callReturn int64
		observeEnd            int64
		err                   error
	}
	var sws []sw
	sleepCtx(ctx, o.switchSettle)
	for range o.switches {
		from := live[t.name]
		to := map[string]string{"blue": "green", "green": "blue"}[from]
		x := sw{from: from, callStart: since()}
		x.err = t.switchTo(ctx, to)
		x.callReturn = since()
		if x.err == nil {
			live[t.name] = to
		}
		sleepCtx(ctx, o.switchObserve)
		x.observeEnd = since()
		sws = append(sws, x)
	}
	stop.Store(true)
	wg.Wait()
	s.OtherCores = otherCores(snap0, snapCPU())
	all := slices.Concat(records...)
	s.Requests = len(all)
	for _, r := range all {
		if !r.ok {
			s.Failed++
		}
	}
	var props, calls []float64
	var errs []error
	for _, x := range sws {
		if x.err != nil {
			errs = append(errs, x.err)
			s.PropagationMs = append(s.PropagationMs, nan)
			continue
		}
		calls = append(calls, float64(x.callReturn-x.callStart)/1e6)
		// The last request that reached the old pool among those that
		// ended before the observation did (a request still running when
		// the next switch starts may be routed by that one).
		last, found := int64(0), false
		for _, r := range all {
			if !r.ok || r.pool != x.from || r.end >= x.observeEnd {
				continue
			}
			if r.start > x.callReturn {
				s.Stale++
			}
			if !found || r.start > last {
				last, found = r.start, true
			}
		}
		p := nan
		if found {
			p = num(float64(last-x.callReturn) / 1e6)
		}
		s.PropagationMs = append(s.PropagationMs, p)
		props = append(props, float64(p))
	}
	s.MedianMs, s.MaxMs, s.CallMs = num(median(props)), num(maxOf(props)), num(median(calls))
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	return s, ctx.Err()
}

// maxSwitchRequests bounds one client's requests in a round.
const maxSwitchRequests = 1_000_000

// postForPool sends one request and names the pool that answered it.
func postForPool(ctx context.Context, c *http.Client, url, body string, prefixes map[string]string) (string, bool) {
	b, err := fetch(ctx, c, http.MethodPost, url, body)
	if err != nil {
		return "", false
	}
	pool, ok := prefixes[responsePrefix(b)]
	return pool, ok
}
