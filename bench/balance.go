package main

// Scenario 6: balancing (issue 17). Four identical simulated replicas of
// one pool (cutover mock-llm queueing like vLLM: a running batch of
// --max-num-seqs, prefill time per uncached prompt token, decode slowing
// with the batch, a prefix cache with a KV budget) behind nginx least_conn,
// HAProxy leastconn and cutover's round_robin, least_outstanding and llm
// balancers. The workload is open loop (Poisson arrivals, seeded): turns of
// multi-turn chats that resend the conversation so far after a shared
// system prompt, mixed with long one-shot prompts, at a rate derived from
// the simulator's timings to keep the pool 70–80 % busy (aimed at 80 %
// with every prompt token counted uncached, which the prefix caches make
// about 73 %; each run reports the share it measured).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// Targets of the balancing scenario, in the order they are interleaved.
const (
	balanceRR  = "cutover-round_robin"
	balanceLO  = "cutover-least_outstanding"
	balanceLLM = "cutover-llm"
)

// balanceOrder is the order of the balancing scenario's rows.
var balanceOrder = []string{targetNginx, targetHAProxy, balanceRR, balanceLO, balanceLLM}

// balanceReplicas is the size of the pool.
const balanceReplicas = 4

// balanceSim is the simulated engine of every replica.
type balanceSim struct {
	MaxNumSeqs      int     `json:"max_num_seqs"`
	TTFTMs          float64 `json:"ttft_ms"`
	PrefillPerTokUs float64 `json:"prefill_per_token_us"`
	ITLMs           float64 `json:"itl_ms"`
	ITLPerSeqMs     float64 `json:"itl_per_seq_ms"`
	KVBlocks        int     `json:"kv_blocks"`
	BlockSize       int     `json:"block_size"`
	// MaxBatchedTokens is the replicas' --max-num-batched-tokens; 0 (the
	// full run's) leaves it off: each prefill runs on its own.
	MaxBatchedTokens int `json:"max_num_batched_tokens,omitempty"`
}

// args are the mock-llm flags of s.
func (s balanceSim) args(seed uint64) []string {
	d := func(v float64, unit time.Duration) string { return time.Duration(v * float64(unit)).String() }
	args := []string{"--max-num-seqs", strconv.Itoa(s.MaxNumSeqs), "--prefill-per-token", d(s.PrefillPerTokUs, time.Microsecond),
		"--itl-per-seq", d(s.ITLPerSeqMs, time.Millisecond), "--kv-blocks", strconv.Itoa(s.KVBlocks),
		"--block-size", strconv.Itoa(s.BlockSize), "--tokens", "4096", "--seed", strconv.FormatUint(seed, 10)}
	if s.MaxBatchedTokens > 0 { // not passed when off: older binaries lack the flag
		args = append(args, "--max-num-batched-tokens", strconv.Itoa(s.MaxBatchedTokens))
	}
	return args
}

// balanceWork is the workload's shape; sizes are in words (the simulator's
// tokens).
type balanceWork struct {
	SystemWords  int     `json:"system_words"`   // shared system prompt of every chat
	UserMin      int     `json:"user_words_min"` // a chat turn's new user message
	UserMax      int     `json:"user_words_max"`
	TurnsMin     int     `json:"turns_min"` // turns per chat
	TurnsMax     int     `json:"turns_max"`
	ChatAnswer   int     `json:"chat_answer_tokens"`
	OneShotMin   int     `json:"one_shot_words_min"` // a long one-shot prompt
	OneShotMax   int     `json:"one_shot_words_max"`
	OneShotAns   int     `json:"one_shot_answer_tokens"`
	OneShotShare float64 `json:"one_shot_share"` // of arrivals
	// Continue is the chance that an arriving chat turn continues an open
	// chat (one not waiting for an answer) rather than starting one.
	Continue float64 `json:"continue"`
}

// meanServiceSeconds is the mean time a request holds a sequence slot with
// the batch busy fraction full, every prompt token counted as uncached (an
// upper bound: prefix-cache hits only make it shorter).
func (w balanceWork) meanServiceSeconds(s balanceSim, busy float64) float64 {
	itl := s.ITLMs + s.ITLPerSeqMs*math.Max(0, busy*float64(s.MaxNumSeqs)-1)
	turns := float64(w.TurnsMin+w.TurnsMax) / 2
	user := float64(w.UserMin+w.UserMax) / 2
	chatPrompt := float64(w.SystemWords) + (turns+1)/2*user + (turns-1)/2*float64(w.ChatAnswer)
	oneShot := float64(w.OneShotMin+w.OneShotMax) / 2
	ms := func(prompt float64, answer int) float64 {
		return s.TTFTMs + prompt*s.PrefillPerTokUs/1000 + float64(answer)*itl
	}
	return (w.OneShotShare*ms(oneShot, w.OneShotAns) + (1-w.OneShotShare)*ms(chatPrompt, w.ChatAnswer)) / 1000
}

// balanceConfig is the whole scenario's setup, as the report shows it.
type balanceConfig struct {
	Sim  balanceSim  `json:"simulator"`
	Work balanceWork `json:"workload"`
}

// Simulator and workload of the full run and of -smoke.
var (
	balanceFull = balanceConfig{
		Sim: balanceSim{MaxNumSeqs: 4, TTFTMs: 5, PrefillPerTokUs: 200, ITLMs: 10, ITLPerSeqMs: 2, KVBlocks: 1024, BlockSize: 16},
		Work: balanceWork{SystemWords: 300, UserMin: 20, UserMax: 60, TurnsMin: 3, TurnsMax: 8, ChatAnswer: 24,
			OneShotMin: 800, OneShotMax: 1600, OneShotAns: 8, OneShotShare: 0.25, Continue: 0.8},
	}
	balanceSmoke = balanceConfig{
		Sim: balanceSim{MaxNumSeqs: 2, TTFTMs: 2, PrefillPerTokUs: 50, ITLMs: 10, ITLPerSeqMs: 1, KVBlocks: 64, BlockSize: 16},
		Work: balanceWork{SystemWords: 40, UserMin: 5, UserMax: 10, TurnsMin: 2, TurnsMax: 3, ChatAnswer: 4,
			OneShotMin: 100, OneShotMax: 200, OneShotAns: 2, OneShotShare: 0.25, Continue: 0.8},
	}
)

// balanceSample is one open-loop run against one target.
type balanceSample struct {
	Target    string `json:"target"`
	Round     int    `json:"round"`
	Sent      int    `json:"sent"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	TTFTP50Ms num    `json:"ttft_p50_ms"`
	TTFTP99Ms num    `json:"ttft_p99_ms"`
	E2EP99Ms  num    `json:"e2e_p99_ms"`
	// Throughput is completed requests per second, from the first arrival
	// to the last answer.
	Throughput num `json:"completed_per_second"`
	// ChatTTFTP99Ms and OneShotTTFTP99Ms split TTFT p99 by kind: a
	// one-shot's own prefill (every token uncached) is most of its TTFT.
	ChatTTFTP99Ms    num `json:"chat_ttft_p99_ms"`
	OneShotTTFTP99Ms num `json:"one_shot_ttft_p99_ms"`
	// FloorTTFTP99Ms is the p99 of the least TTFT each request could have
	// had with no balancer in the way: no wait for a slot and every prompt
	// token cached but the new ones (a one-shot's whole prompt, a chat
	// turn's new message), at the simulator's base TTFT and prefill rate.
	// No balancer's TTFT p99 can be below it.
	FloorTTFTP99Ms num `json:"floor_ttft_p99_ms"`
	// HitRate is prefix-cache hits over lookups (prompt tokens) summed
	// over the replicas during the run.
	HitRate num `json:"prefix_hit_rate"`
	// Busy is the share of the pool's sequence slots that were busy from
	// the first arrival to the last answer: the replicas'
	// vllm:request_inference_time_seconds_sum during the run ÷ (slots ×
	// that time).
	Busy num `json:"busy"`
	// QueueMs is the mean time a request waited for a slot on its replica
	// (vllm:request_queue_time_seconds).
	QueueMs num `json:"queue_mean_ms"`
	// OtherCores is the CPU that processes outside the harness used during
	// the run (cores): the machine's noise.
	OtherCores num `json:"other_cores"`
	// GatewayHeld, GatewayTimedOut and GatewayWaitMs are what cutover's
	// gateway queue (balancer: llm, balancing.queue_timeout) did during
	// the run: requests held while every replica was full, those that
	// waited the whole timeout, and their mean wait there (from the admin
	// status); 0, 0, NaN for the other targets and when none was held.
	GatewayHeld     uint64 `json:"gateway_held"`
	GatewayTimedOut uint64 `json:"gateway_timed_out"`
	GatewayWaitMs   num    `json:"gateway_wait_mean_ms"`
}

// balanceResult is scenario 6.
type balanceResult struct {
	Replicas int             `json:"replicas"`
	Config   balanceConfig   `json:"config"`
	Busy     float64         `json:"busy"` // the pool's busy fraction the rate aims at
	Rate     float64         `json:"rate_per_second"`
	Seconds  float64         `json:"seconds_per_run"`
	Seed     uint64          `json:"seed"`
	Samples  []balanceSample `json:"samples"`
}

// balanceExtra is the config each cutover target adds.
func balanceExtra(balancer string) string {
	return "balancer: " + balancer + "\n"
}

// runBalance runs scenario 6.
func runBalance(ctx context.Context, e *env, o *options) (*balanceResult, error) {
	var ps procSet
	defer func() {
		if err := ps.stopAll(); err != nil {
			e.logf("balance: %v", err)
		}
	}()
	cfg := balanceFull
	if o.smoke {
		cfg = balanceSmoke
	}
	cfg.Sim.MaxBatchedTokens = o.balanceBatchedTokens
	res := &balanceResult{Replicas: balanceReplicas, Config: cfg, Busy: o.balanceBusy, Seconds: o.balanceDuration.Seconds(), Seed: o.balanceSeed}
	res.Rate = o.balanceRate
	if res.Rate <= 0 {
		res.Rate = o.balanceBusy * balanceReplicas * float64(cfg.Sim.MaxNumSeqs) / cfg.Work.meanServiceSeconds(cfg.Sim, o.balanceBusy)
	}
	var reps []string
	for i := range balanceReplicas {
		mo := mockOpts{ttft: time.Duration(cfg.Sim.TTFTMs * float64(time.Millisecond)), itl: time.Duration(cfg.Sim.ITLMs * float64(time.Millisecond)),
			args: cfg.Sim.args(o.balanceSeed + uint64(i))}
		addr, err := e.startMock(ctx, &ps, "mock-balance-"+strconv.Itoa(i+1), mo)
		if err != nil {
			return res, err
		}
		reps = append(reps, addr)
	}
	up := pools{blue: reps[0], blueMore: reps[1:]}
	conns := 4 * int(res.Rate+1)
	var ts []*target
	ng, err := e.startNginx(ctx, &ps, "nginx-balance", up, conns)
	if err != nil {
		return res, err
	}
	hp, err := e.startHAProxy(ctx, &ps, "haproxy-balance", up, conns)
	if err != nil {
		return res, err
	}
	ts = append(ts, ng, hp)
	for _, b := range []struct{ name, balancer string }{{balanceRR, "round_robin"}, {balanceLO, "least_outstanding"}, {balanceLLM, "llm"}} {
		t, err := e.startCutover(ctx, &ps, b.name, up, balanceExtra(b.balancer))
		if err != nil {
			return res, err
		}
		t.name = b.name
		if err := waitAllHealthy(ctx, t, balanceReplicas); err != nil {
			return res, err
		}
		ts = append(ts, t)
	}
	e.logf("balance: %d replicas, %.1f requests/s (%.0f %% busy), %.1f s per run", balanceReplicas, res.Rate, 100*o.balanceBusy, res.Seconds)
	for round := range o.rounds {
		for ti, t := range ts {
			s, err := balanceRun(ctx, t, reps, cfg.Sim, cfg.Work, res.Rate, o.balanceDuration, o.balanceSeed+uint64(round),
				fmt.Sprintf("r%dt%d", round+1, ti))
			if err != nil {
				return res, fmt.Errorf("balance round %d, %s: %w", round+1, t.name, err)
			}
			s.Round = round + 1
			res.Samples = append(res.Samples, s)
			held := ""
			if s.GatewayHeld > 0 {
				held = fmt.Sprintf("  held at the gateway %d (%d timed out), mean %.1f ms", s.GatewayHeld, s.GatewayTimedOut, float64(s.GatewayWaitMs))
			}
			e.logf("balance round %d %-26s TTFT p50 %6.1f p99 %6.1f (chat %6.1f, one-shot %6.1f) ms  e2e p99 %6.1f ms  %4.1f done/s  hit %4.1f %%  busy %4.1f %%  queue %5.1f ms  failed %d%s",
				s.Round, s.Target, float64(s.TTFTP50Ms), float64(s.TTFTP99Ms), float64(s.ChatTTFTP99Ms), float64(s.OneShotTTFTP99Ms), float64(s.E2EP99Ms),
				float64(s.Throughput), 100*float64(s.HitRate), 100*float64(s.Busy), float64(s.QueueMs), s.Failed, held)
		}
	}
	return res, nil
}

// waitAllHealthy waits until cutover's blue pool has n healthy replicas, so
// that no replica misses the start of a run.
func waitAllHealthy(ctx context.Context, t *target, n int) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		st, err := t.admin.Status(ctx)
		if err == nil && st.Pools["blue"].HealthyReplicas >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d replicas not healthy after %s (%v)", t.name, n, readyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for healthy replicas: %w", t.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// chatMsg is one message of a chat completion request.
type chatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// balanceChat is one conversation of a run.
type balanceChat struct {
	msgs     []chatMsg
	maxTurns int
	busy     bool // a turn is in flight
}

// balanceOutcome is one request's measurement.
type balanceOutcome struct {
	ttft, e2e time.Duration
	end       time.Time
	ok        bool
	oneShot   bool
	// floorMs is the least TTFT the request could have had: no wait for a
	// slot, every prompt token cached but the new ones.
	floorMs float64
}

// balanceRun sends one open-loop run through t: arrival i's time gap, kind
// and words come from a generator seeded with (seed, i), so every target
// of a round gets the same arrivals; salt makes the words of this run its
// own, so that no run finds another's prompts in the replicas' caches.
// sim is the replicas' simulator.
func balanceRun(ctx context.Context, t *target, reps []string, sim balanceSim, w balanceWork, rate float64, dur time.Duration, seed uint64, salt string) (balanceSample, error) {
	s := balanceSample{Target: t.name, TTFTP50Ms: nan, TTFTP99Ms: nan, E2EP99Ms: nan, Throughput: nan, HitRate: nan,
		ChatTTFTP99Ms: nan, OneShotTTFTP99Ms: nan, FloorTTFTP99Ms: nan, Busy: nan, QueueMs: nan, GatewayWaitMs: nan}
	q0 := gatewayQueue(ctx, t)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}}
	defer c.CloseIdleConnections()
	c0, err := readEngineCounters(ctx, reps)
	if err != nil {
		return s, err
	}
	snap0 := snapCPU()
	gen := rand.New(rand.NewPCG(seed, 0))
	sysWords := words(gen, salt+"s", w.SystemWords)
	system := chatMsg{Role: "system", Content: sysWords}
	var (
		mu       sync.Mutex
		open     []*balanceChat
		outcomes []balanceOutcome
		wg       sync.WaitGroup
	)
	reqCtx, cancel := context.WithTimeout(ctx, dur+2*time.Minute)
	defer cancel()
	start := time.Now()
	at := time.Duration(0)
	for i := uint64(1); ; i++ {
		r := rand.New(rand.NewPCG(seed, i))
		at += time.Duration(r.ExpFloat64() / rate * float64(time.Second))
		if at >= dur {
			break
		}
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			return s, ctx.Err()
		case <-time.After(time.Until(start.Add(at))):
		}
		var (
			msgs   []chatMsg
			answer int
			chat   *balanceChat
			fresh  int // prompt words no replica can have cached
		)
		if r.Float64() < w.OneShotShare {
			fresh = w.OneShotMin + r.IntN(w.OneShotMax-w.OneShotMin+1)
			msgs = []chatMsg{{Role: "user", Content: words(r, salt, fresh)}}
			answer = w.OneShotAns
		} else {
			cont, pick, turns := r.Float64(), r.Float64(), w.TurnsMin+r.IntN(w.TurnsMax-w.TurnsMin+1)
			fresh = w.UserMin + r.IntN(w.UserMax-w.UserMin+1)
			user := chatMsg{Role: "user", Content: words(r, salt, fresh)}
			mu.Lock()
			var ready []*balanceChat
			for _, ch := range open {
				if !ch.busy {
					ready = append(ready, ch)
				}
			}
			if len(ready) > 0 && cont < w.Continue {
				chat = ready[int(pick*float64(len(ready)))]
			} else {
				chat = &balanceChat{msgs: []chatMsg{system}, maxTurns: turns}
				open = append(open, chat)
			}
			chat.busy = true
			chat.msgs = append(chat.msgs, user)
			msgs = append([]chatMsg(nil), chat.msgs...)
			mu.Unlock()
			answer = w.ChatAnswer
		}
		body, err := json.Marshal(map[string]any{"model": benchModel, "messages": msgs, "max_tokens": answer, "stream": true})
		if err != nil {
			return s, fmt.Errorf("encode request: %w", err)
		}
		s.Sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			text, ttft, err := streamChat(reqCtx, c, t.addr, body)
			out := balanceOutcome{ttft: ttft, e2e: time.Since(sent), end: time.Now(), ok: err == nil, oneShot: chat == nil,
				floorMs: sim.TTFTMs + float64(fresh)*sim.PrefillPerTokUs/1000}
			mu.Lock()
			defer mu.Unlock()
			outcomes = append(outcomes, out)
			if chat == nil {
				return
			}
			chat.busy = false
			if err != nil || len(chat.msgs)/2 >= chat.maxTurns {
				// Done, or broken: a failed turn ends the conversation.
				for k, ch := range open {
					if ch == chat {
						open = append(open[:k], open[k+1:]...)
						break
					}
				}
				return
			}
			chat.msgs = append(chat.msgs, chatMsg{Role: "assistant", Content: text})
		}()
	}
	wg.Wait()
	s.OtherCores = otherCores(snap0, snapCPU())
	if q1 := gatewayQueue(ctx, t); q1.Held > q0.Held {
		s.GatewayHeld, s.GatewayTimedOut = q1.Held-q0.Held, q1.TimedOut-q0.TimedOut
		if n := (q1.Held - uint64(q1.Waiting)) - (q0.Held - uint64(q0.Waiting)); n > 0 {
			s.GatewayWaitMs = num(1000 * (q1.WaitSeconds - q0.WaitSeconds) / float64(n))
		}
	}
	c1, err := readEngineCounters(ctx, reps)
	if err != nil {
		return s, err
	}
	if q := c1.queries - c0.queries; q > 0 {
		s.HitRate = num((c1.hits - c0.hits) / q)
	}
	if n := c1.queueCount - c0.queueCount; n > 0 {
		s.QueueMs = num(1000 * (c1.queueSeconds - c0.queueSeconds) / n)
	}
	var ttfts, e2es, chats, oneShots, floors []float64
	var last time.Time
	for _, o := range outcomes {
		if !o.ok {
			s.Failed++
			continue
		}
		s.Completed++
		ttfts, e2es, floors = append(ttfts, ms(o.ttft)), append(e2es, ms(o.e2e)), append(floors, o.floorMs)
		if o.oneShot {
			oneShots = append(oneShots, ms(o.ttft))
		} else {
			chats = append(chats, ms(o.ttft))
		}
		if o.end.After(last) {
			last = o.end
		}
	}
	if s.Completed > 0 {
		s.TTFTP50Ms, s.TTFTP99Ms, s.E2EP99Ms = num(percentile(ttfts, 50)), num(percentile(ttfts, 99)), num(percentile(e2es, 99))
		s.FloorTTFTP99Ms = num(percentile(floors, 99))
		span := last.Sub(start).Seconds()
		s.Throughput = num(float64(s.Completed) / span)
		if c1.runSeconds > 0 { // a simulator without the metric reports nothing
			s.Busy = num((c1.runSeconds - c0.runSeconds) / (span * float64(sim.MaxNumSeqs*len(reps))))
		}
	}
	if len(chats) > 0 {
		s.ChatTTFTP99Ms = num(percentile(chats, 99))
	}
	if len(oneShots) > 0 {
		s.OneShotTTFTP99Ms = num(percentile(oneShots, 99))
	}
	return s, nil
}

// gatewayQueue reads the blue pool's gateway queue counts from cutover's
// admin status; zero for the other targets, without one, or on an error.
func gatewayQueue(ctx context.Context, t *target) api.GatewayQueue {
	if t.admin == nil {
		return api.GatewayQueue{}
	}
	st, err := t.admin.Status(ctx)
	if err != nil || st.Pools["blue"].GatewayQueue == nil {
		return api.GatewayQueue{}
	}
	return *st.Pools["blue"].GatewayQueue
}

// words returns n words made of salt and random numbers: each is one of the
// simulator's tokens.
func words(r *rand.Rand, salt string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(salt)
		b.WriteString(strconv.FormatUint(r.Uint64N(1<<20), 36))
	}
	return b.String()
}

// streamChat sends a streamed chat completion and returns the answer's text
// and the time to its first token.
func streamChat(ctx context.Context, c *http.Client, addr string, body []byte) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(string(body)))
	if err != nil {
		return "", 0, fmt.Errorf("request to %s: %w", addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return "", 0, fmt.Errorf("%s: HTTP %d", addr, resp.StatusCode)
	}
	var (
		text strings.Builder
		ttft time.Duration
	)
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			if data == "[DONE]" {
				return text.String(), ttft, nil
			}
			var ev struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if jerr := json.Unmarshal([]byte(data), &ev); jerr != nil {
				return "", 0, fmt.Errorf("%s: event %q: %w", addr, data, jerr)
			}
			for _, ch := range ev.Choices {
				if ch.Delta.Content != "" && ttft == 0 {
					ttft = time.Since(sent)
				}
				text.WriteString(ch.Delta.Content)
			}
		}
		if err != nil {
			return "", 0, fmt.Errorf("%s: stream ended before [DONE]: %w", addr, err)
		}
	}
}

// engineCounters are counters of the replicas' /metrics, summed over them.
type engineCounters struct {
	hits, queries float64 // vllm:prefix_cache_hits_total, vllm:prefix_cache_queries_total (tokens)
	runSeconds    float64 // vllm:request_inference_time_seconds_sum: time sequences held a slot
	queueSeconds  float64 // vllm:request_queue_time_seconds_sum: time requests waited for one
	queueCount    float64 // vllm:request_queue_time_seconds_count
}

// readEngineCounters reads and sums the replicas' engineCounters. It waits
// for each answer as long as the replica's connection stands and ctx (the
// run's) lasts, with no timeout of its own: on a loaded machine a
// simulated replica's /metrics took over 5 s and failed the run, while a
// replica that died still fails it at once (its connection breaks).
func readEngineCounters(ctx context.Context, reps []string) (engineCounters, error) {
	var ec engineCounters
	c := &http.Client{}
	for _, r := range reps {
		b, err := fetch(ctx, c, http.MethodGet, "http://"+r+"/metrics", "")
		if err != nil {
			return ec, err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			name, rest, ok := strings.Cut(line, " ")
			if !ok || strings.HasPrefix(line, "#") {
				continue
			}
			if i := strings.IndexByte(name, '{'); i >= 0 {
				name = name[:i]
				_, rest, _ = strings.Cut(line, "} ")
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			v, perr := strconv.ParseFloat(f[0], 64)
			if perr != nil {
				continue
			}
			switch name {
			case "vllm:prefix_cache_hits_total":
				ec.hits += v
			case "vllm:prefix_cache_queries_total":
				ec.queries += v
			case "vllm:request_inference_time_seconds_sum":
				ec.runSeconds += v
			case "vllm:request_queue_time_seconds_sum":
				ec.queueSeconds += v
			case "vllm:request_queue_time_seconds_count":
				ec.queueCount += v
			}
		}
	}
	return ec, nil
}
