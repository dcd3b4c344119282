package pool_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// fresh publishes just-scraped engine metrics on r.
func fresh(r *pool.Replica, waiting, kv float64) {
	r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Waiting: waiting, KV: kv, InFlight: r.InFlight()})
}

// chat returns a chat body whose messages are the given turns.
func chat(turns ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"m","messages":[`)
	for i, t := range turns {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"role":"user","content":"` + t + `"}`)
	}
	b.WriteString(`],"stream":true}`)
	return []byte(b.String())
}

func TestLLMStaleMetricsCountAsSaturated(t *testing.T) {
	rs := replicas(t, 3)
	fresh(rs[0], 3, 0.5)                                                  // loaded but fresh
	rs[1].SetEngineLoad(&pool.EngineLoad{At: time.Now().Add(-time.Hour)}) // idle, but stale
	// rs[2] never scraped
	l := pool.NewLLM(pool.LLMOptions{})
	for i := range 20 {
		if got := l.Pick(rs, nil); got != rs[0] {
			t.Fatalf("pick %d: %s, want the only replica with fresh metrics %s", i, got.Name, rs[0].Name)
		}
	}
	// With nothing fresh, it still answers (least outstanding).
	if got := l.Pick(rs, rs[0]); got == nil || got == rs[0] {
		t.Fatalf("all stale: got %v, want another replica", got)
	}
}

func TestLLMDisqualificationThresholds(t *testing.T) {
	for _, tc := range []struct {
		name           string
		waiting        float64
		kv             float64
		inflight       int64   // gateway requests sent since the scrape
		running, slots float64 // the engine's batch then, and as learned
		out            bool
	}{
		{"queue at the limit", 5, 0.1, 0, 0, 0, false},
		{"queue above", 6, 0.1, 0, 0, 0, true},
		{"kv at the limit", 0, 0.8, 0, 0, 0, false},
		{"kv above", 0, 0.81, 0, 0, 0, true},
		{"queue above with the gateway's own requests", 3, 0.1, 3, 0, 0, true},
		{"a full batch: the gateway's requests queue", 2, 0.1, 4, 4, 4, true},
		{"free slots take the gateway's requests first", 0, 0.1, 8, 0, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := replicas(t, 2)
			rs[0].SetEngineLoad(&pool.EngineLoad{At: time.Now(), Waiting: tc.waiting, Running: tc.running, Slots: tc.slots, KV: tc.kv})
			for range tc.inflight {
				rs[0].Acquire()
			}
			fresh(rs[1], 0, 0)
			// rs[1] looks worse (fresh requests in flight) but qualifies.
			rs[1].SetEngineLoad(&pool.EngineLoad{At: time.Now(), Waiting: 5, KV: 0.8, InFlight: rs[1].InFlight()})
			l := pool.NewLLM(pool.LLMOptions{})
			n0 := 0
			for range 10 {
				if l.Pick(rs, nil) == rs[0] {
					n0++
				}
			}
			if tc.out && n0 != 0 {
				t.Errorf("disqualified replica got %d of 10 picks", n0)
			}
			if !tc.out && n0 != 10 {
				t.Errorf("qualified, less loaded replica got %d of 10 picks", n0)
			}
		})
	}
}

func TestLLMBurstAfterScrapeSpreads(t *testing.T) {
	rs := replicas(t, 4)
	for _, r := range rs {
		fresh(r, 0, 0.2)
	}
	l := pool.NewLLM(pool.LLMOptions{})
	counts := map[*pool.Replica]int{}
	for range 12 { // no scrape in between: only the gateway's own counts move
		r := l.PickBody(rs, nil, chat("same short prompt"))
		r.Acquire()
		counts[r]++
	}
	for _, r := range rs {
		if counts[r] != 3 {
			t.Errorf("%s got %d of 12, want 3 each: %v", r.Name, counts[r], counts)
		}
	}
}

func TestLLMSkipsUnhealthyAndSkip(t *testing.T) {
	rs := replicas(t, 3)
	for _, r := range rs {
		fresh(r, 0, 0)
	}
	rs[0].Eject(time.Now(), errDown)
	l := pool.NewLLM(pool.LLMOptions{})
	for range 10 {
		if got := l.Pick(rs, rs[1]); got != rs[2] {
			t.Fatalf("got %s, want %s", got.Name, rs[2].Name)
		}
	}
	if got := l.Pick(nil, nil); got != nil {
		t.Fatalf("no replicas: got %v", got)
	}
}

func TestLLMPickDoesNotAllocate(t *testing.T) {
	rs := replicas(t, 4)
	for _, r := range rs {
		fresh(r, 1, 0.3)
	}
	l := pool.NewLLM(pool.LLMOptions{})
	body := chat(strings.Repeat("a long shared system prompt ", 200), "hello")
	if n := testing.AllocsPerRun(200, func() { l.PickBody(rs, nil, body) }); n != 0 {
		t.Fatalf("PickBody allocates %v times per call", n)
	}
}

func BenchmarkLLMPickBody(b *testing.B) {
	rs := replicas(b, 4)
	for _, r := range rs {
		fresh(r, 1, 0.3)
	}
	l := pool.NewLLM(pool.LLMOptions{})
	body := chat(strings.Repeat("a long shared system prompt ", 40), "hello")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.PickBody(rs, nil, body)
		}
	})
}

func TestParseEngineMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, text           string
		waiting, running, kv float64
		hits, queries        float64
		wantErr              bool
	}{
		{"vllm", `# HELP vllm:num_requests_waiting x
vllm:num_requests_waiting{model_name="m"} 2.0
vllm:num_requests_running{model_name="m"} 7
vllm:kv_cache_usage_perc{model_name="m"} 0.25
vllm:gpu_cache_usage_perc{model_name="m"} 0.9
vllm:prefix_cache_hits_total{model_name="m"} 30
vllm:prefix_cache_queries_total{model_name="m"} 120
`, 2, 7, 0.25, 30, 120, false},
		{"older vllm", `vllm:num_requests_waiting{model_name="m",engine="0"} 1
vllm:num_requests_running{model_name="m",engine="0"} 3
vllm:gpu_cache_usage_perc{model_name="m",engine="0"} 0.5
`, 1, 3, 0.5, 0, 0, false},
		{"two engines summed", `vllm:num_requests_waiting{engine="0"} 1
vllm:num_requests_waiting{engine="1"} 2
vllm:num_requests_running{engine="0"} 1
`, 3, 1, 0, 0, 0, false},
		{"sglang", `sglang:num_queue_reqs{model_name="m"} 4
sglang:num_running_reqs{model_name="m"} 9
sglang:token_usage{model_name="m"} 0.6
`, 4, 9, 0.6, 0, 0, false},
		{"not an engine", "go_goroutines 12\n", 0, 0, 0, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := pool.ParseEngineMetrics(strings.NewReader(tc.text))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %q", tc.text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Waiting != tc.waiting || e.Running != tc.running || e.KV != tc.kv || e.PrefixHits != tc.hits || e.PrefixQueries != tc.queries {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestScraperPublishesAndGoesStale(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || !up.Load() {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("vllm:num_requests_waiting 4\nvllm:num_requests_running 2\nvllm:kv_cache_usage_perc 0.5\n"))
	}))
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	r := pool.NewReplica(u)
	r.Acquire()
	s := &pool.Scraper{Targets: func() []pool.Target { return []pool.Target{{Replica: r}, {Replica: r}} }}
	s.Tick(context.Background())
	e := r.EngineLoad()
	if e == nil || e.Waiting != 4 || e.Running != 2 || e.KV != 0.5 || e.InFlight != 1 {
		t.Fatalf("after a scrape: %+v", e)
	}
	up.Store(false)
	s.Tick(context.Background())
	if r.EngineLoad() != e {
		t.Fatalf("a failed scrape replaced the last metrics")
	}
}

// slotted publishes just-scraped metrics of an idle engine whose batch has
// been seen holding slots sequences.
func slotted(r *pool.Replica, slots float64) {
	r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Slots: slots, KV: 0.1, InFlight: r.InFlight()})
}

// sharedSystem returns n idle replicas with batches of 4, an llm balancer
// (32-byte prefix blocks) and a system prompt of repeat sentences that it
// sent to each replica (a pick among one), as earlier conversations would
// have: every replica caches it.
func sharedSystem(t *testing.T, n, repeat int) ([]*pool.Replica, *pool.LLM, string) {
	rs := replicas(t, n)
	for _, r := range rs {
		slotted(r, 4)
	}
	l := pool.NewLLM(pool.LLMOptions{BlockBytes: 32})
	system := strings.Repeat("You are a helpful assistant. ", repeat)
	for _, r := range rs {
		l.PickBody([]*pool.Replica{r}, nil, chat(system))
	}
	return rs, l, system
}

// TestLLMAffinityStaysUntilItWouldWaitThenSpills: a conversation whose
// own turns are most of its prompt stays on the replica holding them while
// that replica has a free slot in its batch, even when others hold fewer
// requests; once the turn would wait there and not elsewhere it spills,
// and the next turn follows it. With every replica as busy the prefix
// decides again.
func TestLLMAffinityStaysUntilItWouldWaitThenSpills(t *testing.T) {
	rs, l, system := sharedSystem(t, 4, 20)
	turns := []string{system, strings.Repeat("A first question about a long document. ", 20)}
	first := l.PickBody(rs, nil, chat(turns...))
	first.Acquire()
	for i := range 3 { // first now holds 1, 2, 3 of its 4 slots
		turns = append(turns, strings.Repeat("more words ", 10))
		if got := l.PickBody(rs, nil, chat(turns...)); got != first {
			t.Fatalf("turn %d went to %s, want %s (holding %d of 4)", i+2, got.Name, first.Name, first.InFlight())
		}
		first.Acquire()
	}
	turns = append(turns, "and one more")
	spill := l.PickBody(rs, nil, chat(turns...))
	if spill == first {
		t.Fatalf("the turn waits on %s (4 of 4 slots busy) while others are idle", first.Name)
	}
	turns = append(turns, "next")
	if got := l.PickBody(rs, nil, chat(turns...)); got != spill {
		t.Fatalf("after the spill the conversation went to %s, want %s", got.Name, spill.Name)
	}
	for _, r := range rs {
		for r.InFlight() < 6 {
			r.Acquire()
		}
	}
	turns = append(turns, "after")
	if got := l.PickBody(rs, nil, chat(turns...)); got != spill {
		t.Fatalf("all busy alike: the conversation went to %s, want %s", got.Name, spill.Name)
	}
}

// TestLLMShortPrefixGoesToTheLessLoaded: when a replica holds only a small
// share of the prompt (a second turn after a long shared system prompt),
// a replica running fewer sequences wins: a fuller batch decodes slower
// for everyone in it.
func TestLLMShortPrefixGoesToTheLessLoaded(t *testing.T) {
	rs, l, system := sharedSystem(t, 2, 40)
	turns := []string{system, "hi"}
	first := l.PickBody(rs, nil, chat(turns...))
	other := rs[0]
	if other == first {
		other = rs[1]
	}
	for range 3 {
		first.Acquire()
	}
	turns = append(turns, "hello", "and?")
	if got := l.PickBody(rs, nil, chat(turns...)); got != other {
		t.Fatalf("the turn went to %s (3 of 4 slots busy) for a small share of its prompt; want the idle %s", got.Name, other.Name)
	}
}

// TestLLMSharedPrefixDoesNotHerd: a system prompt every conversation
// shares is cached on every replica it went to; new conversations behind
// it go to the least loaded of them, not to the last one that got it.
func TestLLMSharedPrefixDoesNotHerd(t *testing.T) {
	rs, l, system := sharedSystem(t, 4, 20)
	for i, r := range rs { // rs[2] holds the fewest requests
		for range []int{2, 2, 0, 2}[i] {
			r.Acquire()
		}
	}
	for i := range 2 {
		r := l.PickBody(rs, nil, chat(system, fmt.Sprintf("question %d", i)))
		if r != rs[2] {
			t.Fatalf("new chat %d behind the shared system prompt went to %s, want the least loaded %s", i, r.Name, rs[2].Name)
		}
		r.Acquire()
	}
}

// TestScraperLearnsBatchAndKVPerSequence: the scraper keeps the largest
// batch seen and averages KV use per running sequence over scrapes.
func TestScraperLearnsBatchAndKVPerSequence(t *testing.T) {
	var page atomic.Value
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(page.Load().(string)))
	}))
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	r := pool.NewReplica(u)
	s := &pool.Scraper{Targets: func() []pool.Target { return []pool.Target{{Replica: r}} }}
	for i, tc := range []struct {
		metrics         string
		slots, kvPerSeq float64
	}{
		{"vllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n", 0, 0},
		{"vllm:num_requests_running 4\nvllm:num_requests_waiting 3\nvllm:kv_cache_usage_perc 0.4\n", 4, 0.1},
		{"vllm:num_requests_running 2\nvllm:kv_cache_usage_perc 0.4\n", 4, 0.1 + (0.2-0.1)/8},
		{"vllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n", 4, 0.1 + (0.2-0.1)/8},
	} {
		page.Store(tc.metrics)
		s.Tick(context.Background())
		e := r.EngineLoad()
		if e == nil || e.Slots != tc.slots || math.Abs(e.KVPerSeq-tc.kvPerSeq) > 1e-12 {
			t.Fatalf("scrape %d: %+v, want slots %g, KV per sequence %g", i+1, e, tc.slots, tc.kvPerSeq)
		}
	}
}

// TestLLMRequestInTransitAtScrapeCounts: a request the gateway had sent
// but the engine had not seen yet when its metrics were read still holds
// a slot: the replica whose batch it fills does not look free.
func TestLLMRequestInTransitAtScrapeCounts(t *testing.T) {
	rs := replicas(t, 2)
	for range 4 {
		rs[0].Acquire()
	}
	for range 3 {
		rs[1].Acquire()
	}
	// rs[0]: 4 sent, the engine saw 3 running (one on its way); rs[1]: 3
	// sent, 3 running, one slot free.
	rs[0].SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 3, Slots: 4, KV: 0.3, InFlight: 4})
	rs[1].SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 3, Slots: 4, KV: 0.3, InFlight: 3})
	l := pool.NewLLM(pool.LLMOptions{})
	for i := range 10 {
		if got := l.Pick(rs, nil); got != rs[1] {
			t.Fatalf("pick %d: %s, whose 4 slots are all taken; want %s", i, got.Name, rs[1].Name)
		}
	}
}

// TestScraperCountsRequestsSentDuringTheScrape: a request the gateway
// sends while the engine writes its metrics, which count it, is the
// gateway's own: the balancer must not count it again as another
// client's until the next scrape.
func TestScraperCountsRequestsSentDuringTheScrape(t *testing.T) {
	var r *pool.Replica
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.Acquire() // sent by the gateway now, and already running
		_, _ = w.Write([]byte("vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n"))
	}))
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	r = pool.NewReplica(u)
	s := &pool.Scraper{Targets: func() []pool.Target { return []pool.Target{{Replica: r}} }}
	s.Tick(context.Background())
	if e := r.EngineLoad(); e == nil || e.InFlight != 1 {
		t.Fatalf("after a scrape during which the gateway sent the engine's one request: %+v, want InFlight 1", e)
	}
}
