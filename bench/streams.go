package main

// Scenario 2: concurrent SSE streams. Time to first event added over direct,
// and for every chunk the delay between the backend's send (packet capture
// on lo) and the client's read.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// streamsSample is one round of concurrent streams through one target.
// Delays are in milliseconds; Added* are the target's value minus direct's
// in the same round (0 for direct itself).
type streamsSample struct {
	Target  string `json:"target"`
	Round   int    `json:"round"`
	Streams int    `json:"streams"`
	Failed  int    `json:"failed"` // not HTTP 200, cut, or no [DONE]
	// TTFB is from the request's write to the read that completed the first
	// event (time to first token, as the client sees it).
	TTFBP50Ms      num `json:"ttfb_p50_ms"`
	TTFBP99Ms      num `json:"ttfb_p99_ms"`
	AddedTTFBP50Ms num `json:"added_ttfb_p50_ms"`
	AddedTTFBP99Ms num `json:"added_ttfb_p99_ms"`
	// Chunks is the events received; Matched those whose send time the
	// capture saw (a stream counts only when every event matches).
	Chunks          int `json:"chunks"`
	Matched         int `json:"matched"`
	DelayP50Ms      num `json:"delay_p50_ms"`
	DelayP99Ms      num `json:"delay_p99_ms"`
	DelayMaxMs      num `json:"delay_max_ms"`
	AddedDelayP50Ms num `json:"added_delay_p50_ms"`
	AddedDelayP99Ms num `json:"added_delay_p99_ms"`
	// Coalesced counts events that reached the client in one read with an
	// event sent at least ITL/2 earlier. HeldBack counts events read more
	// than one ITL after they were sent (after the next one was sent).
	Coalesced int `json:"coalesced"`
	HeldBack  int `json:"held_back"`
	// CaptureDrops is the segments the kernel could not queue to the
	// capture during the round (then delays are incomplete).
	CaptureDrops int `json:"capture_drops"`
	// Retransmitted counts events the backend's TCP sent twice: a segment
	// dropped on loopback (a receive queue full) and resent after an RTO,
	// which shows as a chunk held back for 200 ms or more.
	Retransmitted int `json:"retransmitted"`
	// OtherCores is the CPU that processes outside the harness used during
	// the run (cores): the machine's noise.
	OtherCores num `json:"other_cores"`
}

// streamsResult is scenario 2.
type streamsResult struct {
	Streams int     `json:"streams"`
	Chunks  int     `json:"chunks"`
	ITLMs   float64 `json:"itl_ms"`
	// Capture says how send times were taken, or why they were not.
	Capture string          `json:"capture"`
	Samples []streamsSample `json:"samples"`
}

// runStreams runs scenario 2: a warm-up round, then interleaved rounds.
func runStreams(ctx context.Context, e *env, o *options) (*streamsResult, error) {
	var ps procSet
	defer func() {
		if err := ps.stopAll(); err != nil {
			e.logf("streams: %v", err)
		}
	}()
	mock, err := e.startMock(ctx, &ps, "mock-streams", mockOpts{itl: o.streamITL, tokens: o.streamChunks})
	if err != nil {
		return nil, err
	}
	ts, err := e.startTargets(ctx, &ps, "streams", pools{blue: mock}, o.streams)
	if err != nil {
		return nil, err
	}
	res := &streamsResult{Streams: o.streams, Chunks: o.streamChunks, ITLMs: ms(o.streamITL),
		Capture: "AF_PACKET on lo, kernel timestamps of the backend's segments"}
	_, portStr, _ := net.SplitHostPort(mock)
	port, _ := strconv.Atoi(portStr)
	sn, err := startSniffer(port)
	if err != nil {
		res.Capture = "none: " + err.Error()
		sn = nil
	} else {
		defer func() {
			if err := sn.close(); err != nil {
				e.logf("streams: capture: %v", err)
			}
		}()
	}
	for round := 0; round <= o.streamsRounds; round++ { // round 0 warms up
		var direct *streamsSample
		// The order stays fixed (see roundOrder): every target's
		// connections to the backend then idle for the same time between
		// its rounds, under the backend's 5 s keep-alive timeout. With
		// the order rotated, some rounds came after a longer pause, and
		// the proxy in them dialled all 200 connections anew.
		for _, t := range ts {
			s, err := streamsRound(ctx, t, o, sn, round)
			if err != nil {
				return res, fmt.Errorf("streams round %d, %s: %w", round, t.name, err)
			}
			if round == 0 {
				continue
			}
			if t.name == targetDirect {
				direct = &s
			}
			if direct != nil {
				s.AddedTTFBP50Ms, s.AddedTTFBP99Ms = s.TTFBP50Ms-direct.TTFBP50Ms, s.TTFBP99Ms-direct.TTFBP99Ms
				s.AddedDelayP50Ms, s.AddedDelayP99Ms = s.DelayP50Ms-direct.DelayP50Ms, s.DelayP99Ms-direct.DelayP99Ms
			}
			res.Samples = append(res.Samples, s)
			e.logf("streams round %d %-8s ttfb p50 %6.3f p99 %6.3f ms  chunk delay p50 %6.3f p99 %6.3f max %6.3f ms  coalesced %d held back %d failed %d",
				s.Round, s.Target, float64(s.TTFBP50Ms), float64(s.TTFBP99Ms), float64(s.DelayP50Ms), float64(s.DelayP99Ms),
				float64(s.DelayMaxMs), s.Coalesced, s.HeldBack, s.Failed)
		}
	}
	return res, nil
}

// streamsRound opens o.streams connections to t, then starts the streams
// spread over one ITL (so that the backend's sends are not all in step),
// reads them to the end and matches every event with its send time.
func streamsRound(ctx context.Context, t *target, o *options, sn *sniffer, round int) (streamsSample, error) {
	s := streamsSample{Target: t.name, Round: round, Streams: o.streams}
	conns := make([]net.Conn, o.streams)
	var wg sync.WaitGroup
	errs := make([]error, o.streams)
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			conns[i], errs[i] = dialStream(ctx, t.addr)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
			return s, fmt.Errorf("stream %d: %w", i, err)
		}
	}
	streamTime := o.streamITL * time.Duration(o.streamChunks+1)
	deadline := time.Now().Add(3*streamTime + 10*time.Second)
	results := make([]streamResult, o.streams)
	snap0 := snapCPU()
	start := time.Now()
	for i, c := range conns {
		req := rawChatRequest(t.addr, o.streamChunks, fmt.Sprintf("stream %d of round %d", i, round))
		wg.Go(func() {
			time.Sleep(time.Until(start.Add(o.streamITL * time.Duration(i) / time.Duration(o.streams))))
			results[i] = runStream(c, req, streamOpts{deadline: deadline, bufSize: 16 << 10, keepIDs: true})
		})
	}
	wg.Wait()
	s.OtherCores = otherCores(snap0, snapCPU())
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("streams: %w", err)
	}
	if sn != nil {
		time.Sleep(100 * time.Millisecond) // let the capture read the last segments
	}
	analyseStreams(&s, results, sn, o.streamITL, o.streamChunks)
	if sn != nil {
		s.CaptureDrops = sn.drops()
		s.Retransmitted = sn.forget()
	}
	return s, nil
}

// analyseStreams fills s from the streams' results and the capture's send
// times (sn may be nil: no per-chunk delays then).
func analyseStreams(s *streamsSample, results []streamResult, sn *sniffer, itl time.Duration, chunks int) {
	var ttfb, delays []float64
	for _, r := range results {
		// chunks tokens plus the role chunk
		if r.err != nil || r.status != 200 || !r.done || len(r.events) != chunks+1 {
			s.Failed++
		}
		s.Chunks += len(r.events)
		if len(r.events) > 0 {
			ttfb = append(ttfb, float64(r.events[0].readAt-r.sent)/1e6)
		}
		if sn == nil || len(r.events) == 0 {
			continue
		}
		sent := sn.take(r.events[0].id)
		if len(sent) != len(r.events) {
			continue // a lost segment would pair events with the wrong sends
		}
		s.Matched += len(r.events)
		first := 0 // first event of the current read
		for k, ev := range r.events {
			d := float64(ev.readAt-sent[k]) / 1e6
			delays = append(delays, d)
			if d > ms(itl) {
				s.HeldBack++
			}
			if k > 0 && ev.read == r.events[k-1].read {
				if time.Duration(sent[k]-sent[first]) >= itl/2 {
					s.Coalesced++
				}
			} else {
				first = k
			}
		}
	}
	s.TTFBP50Ms, s.TTFBP99Ms = num(percentile(ttfb, 50)), num(percentile(ttfb, 99))
	s.DelayP50Ms, s.DelayP99Ms, s.DelayMaxMs = num(percentile(delays, 50)), num(percentile(delays, 99)), num(maxOf(delays))
	s.AddedTTFBP50Ms, s.AddedTTFBP99Ms, s.AddedDelayP50Ms, s.AddedDelayP99Ms = 0, 0, 0, 0
	if sn == nil {
		s.AddedDelayP50Ms, s.AddedDelayP99Ms = nan, nan
	}
}
