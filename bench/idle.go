package main

// Scenario 3: many idle-ish streams (one token per ITL, e.g. 1 s) held open
// through one proxy at a time: the proxy's memory at the plateau and whether
// every stream still gets its chunks on time.

import (
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// idleSample is one target holding o.idleStreams streams.
type idleSample struct {
	Target      string `json:"target"`
	Round       int    `json:"round"`
	Streams     int    `json:"streams"`
	Established int    `json:"established"` // HTTP 200 and a first event before the plateau
	Failed      int    `json:"failed"`      // refused, cut or ended early
	RampSeconds num    `json:"ramp_seconds"`
	// RSS is the sum of VmRSS over the proxy's processes (MiB): before the
	// ramp, and the largest sample during the plateau. NaN for direct.
	BaselineRSSMiB num `json:"baseline_rss_mib"`
	PlateauRSSMiB  num `json:"plateau_rss_mib"`
	PerStreamKiB   num `json:"per_stream_kib"`
	// OnTime counts established streams whose every gap between two events
	// during the plateau (and from the last one to its end) stayed within
	// ITL plus the tolerance; Late the others.
	OnTime int `json:"on_time"`
	Late   int `json:"late"`
	// Each stream's largest gap during the plateau: p99 and max over streams.
	MaxGapP99Ms num `json:"max_gap_p99_ms"`
	MaxGapMs    num `json:"max_gap_max_ms"`
	// OtherCores is the CPU that processes outside the harness used during
	// the plateau (cores): the machine's noise.
	OtherCores num `json:"other_cores"`
	// Failures counts the failed streams by reason.
	Failures map[string]int `json:"failures,omitempty"`
}

// idleResult is scenario 3.
type idleResult struct {
	// Requested is the streams asked for; Streams those run, fewer when
	// RLIMIT_NOFILE cannot hold two sockets per stream in one proxy process.
	Requested      int          `json:"requested"`
	Streams        int          `json:"streams"`
	ITLMs          float64      `json:"itl_ms"`
	PlateauSeconds float64      `json:"plateau_seconds"`
	ToleranceMs    float64      `json:"tolerance_ms"`
	NoFile         uint64       `json:"rlimit_nofile"`
	Samples        []idleSample `json:"samples"`
}

// runIdle runs scenario 3, one target at a time, each with a fresh backend
// and a fresh proxy so that the memory of one run does not carry over.
func runIdle(ctx context.Context, e *env, o *options) (*idleResult, error) {
	n := min(o.idleStreams, maxIdleStreams(e.nofile))
	if n < o.idleStreams {
		e.logf("idle: %d streams instead of %d: RLIMIT_NOFILE is %d and a proxy process holds two sockets per stream",
			n, o.idleStreams, e.nofile)
	}
	res := &idleResult{Requested: o.idleStreams, Streams: n, ITLMs: ms(o.idleITL), PlateauSeconds: o.idlePlateau.Seconds(),
		ToleranceMs: ms(o.idleITL / 4), NoFile: e.nofile}
	for round := 1; round <= o.idleRounds; round++ {
		for _, name := range []string{targetDirect, targetNginx, targetHAProxy, targetCutover} {
			s, err := idleRun(ctx, e, o, name, n)
			if err != nil {
				return res, fmt.Errorf("idle streams round %d, %s: %w", round, name, err)
			}
			s.Round = round
			res.Samples = append(res.Samples, s)
			e.logf("idle round %d %-8s %d/%d established  RSS %.1f -> %.1f MiB (%.1f KiB/stream)  on time %d late %d  max gap p99 %.0f ms max %.0f ms",
				s.Round, s.Target, s.Established, s.Streams, float64(s.BaselineRSSMiB), float64(s.PlateauRSSMiB),
				float64(s.PerStreamKiB), s.OnTime, s.Late, float64(s.MaxGapP99Ms), float64(s.MaxGapMs))
		}
	}
	return res, nil
}

// idleStream is one stream's connection and what it received.
type idleStream struct {
	conn net.Conn
	res  streamResult
}

// fdReserve is what a proxy process needs besides its stream sockets:
// listeners, logs, health checks, pipes.
const fdReserve = 200

// maxIdleStreams is how many streams one proxy process can relay under the
// RLIMIT_NOFILE nofile: a client socket and an upstream socket each.
func maxIdleStreams(nofile uint64) int {
	if nofile <= 2*fdReserve {
		return 1
	}
	return int(nofile-fdReserve) / 2
}

// idleSettleMax bounds the wait, after the ramp, for every stream's first
// event: the plateau starts when all have one or after this.
const idleSettleMax = 10 * time.Second

// idleRun holds n streams through the named target.
func idleRun(ctx context.Context, e *env, o *options, name string, n int) (idleSample, error) {
	s := idleSample{Target: name, Streams: n, BaselineRSSMiB: nan, PlateauRSSMiB: nan, PerStreamKiB: nan,
		MaxGapP99Ms: nan, MaxGapMs: nan, OtherCores: nan, Failures: map[string]int{}}
	var ps procSet
	defer func() {
		if err := ps.stopAll(); err != nil {
			e.logf("idle %s: %v", name, err)
		}
	}()
	// The streams outlive the ramp, the settling and the plateau.
	life := o.idleRampMax + idleSettleMax + o.idlePlateau + 5*time.Second
	tokens := int(math.Ceil(float64(life)/float64(o.idleITL))) + 2
	mock, err := e.startMock(ctx, &ps, "mock-idle-"+name, mockOpts{itl: o.idleITL, tokens: tokens})
	if err != nil {
		return s, err
	}
	t := &target{name: targetDirect, addr: mock}
	up := pools{blue: mock}
	switch name {
	case targetNginx:
		t, err = e.startNginx(ctx, &ps, "nginx-idle", up, n)
	case targetHAProxy:
		t, err = e.startHAProxy(ctx, &ps, "haproxy-idle", up, n)
	case targetCutover:
		t, err = e.startCutover(ctx, &ps, "cutover-idle", up, "")
	}
	if err != nil {
		return s, err
	}
	if t.grp != nil {
		if kb, err := t.grp.rssKB(); err == nil {
			s.BaselineRSSMiB = num(float64(kb) / 1024)
		}
	}

	// Ramp: start the streams at o.idleRate per second.
	streams := make([]*idleStream, n)
	var (
		wg      sync.WaitGroup
		closing atomic.Bool
		started atomic.Int64 // streams that got their first event
		mu      sync.Mutex   // guards the conn fields against the final close
	)
	opts := streamOpts{deadline: time.Now().Add(life + 30*time.Second), bufSize: 4 << 10,
		onFirst: func() { started.Add(1) }}
	rampStart := time.Now()
	for i := range streams {
		if d := time.Until(rampStart.Add(time.Duration(float64(i) / o.idleRate * float64(time.Second)))); d > 0 {
			sleepCtx(ctx, d)
		}
		if ctx.Err() != nil || time.Since(rampStart) > o.idleRampMax {
			break
		}
		st := &idleStream{}
		streams[i] = st
		wg.Go(func() {
			c, err := dialStream(ctx, t.addr)
			if err != nil {
				st.res.err = err
				return
			}
			mu.Lock()
			if closing.Load() {
				mu.Unlock()
				c.Close()
				return
			}
			st.conn = c
			mu.Unlock()
			st.res = runStream(c, rawChatRequest(t.addr, tokens, fmt.Sprintf("idle %d", i)), opts)
		})
	}
	s.RampSeconds = num(time.Since(rampStart).Seconds())
	// Settle: until every stream has its first event (bounded), then one
	// more ITL so that the plateau starts in the steady state.
	for settle := time.Now(); started.Load() < int64(n) && time.Since(settle) < idleSettleMax && ctx.Err() == nil; {
		sleepCtx(ctx, 50*time.Millisecond)
	}
	sleepCtx(ctx, o.idleITL)

	w0, snap0 := time.Now(), snapCPU()
	var peak uint64
	for tick := time.Now(); time.Since(w0) < o.idlePlateau && ctx.Err() == nil; {
		if t.grp != nil {
			if kb, err := t.grp.rssKB(); err == nil {
				peak = max(peak, kb)
			}
		}
		tick = tick.Add(o.idlePlateau / 10)
		sleepCtx(ctx, min(time.Until(tick), time.Until(w0.Add(o.idlePlateau))))
	}
	w1 := time.Now()
	s.OtherCores = otherCores(snap0, snapCPU())
	if t.grp != nil {
		if kb, err := t.grp.rssKB(); err == nil {
			peak = max(peak, kb)
		}
		s.PlateauRSSMiB = num(float64(peak) / 1024)
	}

	// Stop every stream, then look at what each received.
	mu.Lock()
	closing.Store(true)
	for _, st := range streams {
		if st != nil && st.conn != nil {
			st.conn.Close()
		}
	}
	mu.Unlock()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("idle streams: %w", err)
	}
	var gaps []float64
	tol := o.idleITL + o.idleITL/4
	for _, st := range streams {
		if st == nil {
			s.Failed++
			s.Failures["not started: the ramp ran out of time"]++
			continue
		}
		g, why := plateauGap(st.res, w0.UnixNano(), w1.UnixNano())
		if why != "" {
			s.Failed++
			s.Failures[why]++
			continue
		}
		s.Established++
		gaps = append(gaps, ms(g))
		if g <= tol {
			s.OnTime++
		} else {
			s.Late++
		}
	}
	s.MaxGapP99Ms, s.MaxGapMs = num(percentile(gaps, 99)), num(maxOf(gaps))
	if s.Established > 0 && s.BaselineRSSMiB.valid() && s.PlateauRSSMiB.valid() {
		s.PerStreamKiB = num((float64(s.PlateauRSSMiB) - float64(s.BaselineRSSMiB)) * 1024 / float64(s.Established))
	}
	return s, nil
}

// plateauGap returns the largest silence a stream saw during [w0, w1]
// (Unix ns): between two events, from the last event before w0 to the
// first inside, and from the last one to w1. why says, instead, why the
// stream does not count: no answer, no event before w0, or ended early.
func plateauGap(r streamResult, w0, w1 int64) (gap time.Duration, why string) {
	switch {
	case r.status == 0 && r.err != nil:
		return 0, "no answer: " + shortErr(r.err)
	case r.status != 200:
		return 0, fmt.Sprintf("HTTP %d", r.status)
	case len(r.events) == 0 || r.events[0].readAt > w0:
		return 0, "no event before the plateau"
	case r.done:
		return 0, "stream ended early"
	}
	prev := r.events[0].readAt
	var worst int64
	for _, ev := range r.events[1:] {
		if ev.readAt > w1 {
			break
		}
		if ev.readAt > w0 {
			worst = max(worst, ev.readAt-prev)
		}
		prev = ev.readAt
	}
	worst = max(worst, w1-prev)
	return time.Duration(worst), ""
}

// shortErr shortens an error to its last part, without addresses, so that
// failures group.
func shortErr(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
