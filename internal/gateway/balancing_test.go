package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestLLMBalancerScrapesAndKeepsAffinity starts a gateway with balancer:
// llm: it reads every replica's /metrics, and the turns of one
// conversation all reach the replica that holds its prefix, where the
// simulator's prefix cache then hits.
func TestLLMBalancerScrapesAndKeepsAffinity(t *testing.T) {
	e := newEnv(t, envOptions{replicas: 3, mock: mockllm.Config{KVBlocks: 512}, edit: func(c *config.Config) {
		c.Balancer = "llm"
		c.Balancing.MetricsInterval = config.Duration(20 * time.Millisecond)
		c.Balancing.StaleAfter = config.Duration(time.Minute) // a loaded machine's late scrape is no test
	}})
	waitFor(t, "every replica scraped", 10*time.Second, func() bool {
		for _, tg := range e.gw.Controller().Targets() {
			if tg.Replica.EngineLoad() == nil {
				return false
			}
		}
		return true
	})
	prompt := strings.Repeat("a long shared system prompt about the weather ", 20)
	var first string
	for i := range 6 {
		prompt += " and turn " + strings.Repeat("x", i+1)
		res, err := e.chat(context.Background(), "model-v1", prompt, i%2 == 0, "")
		if err != nil || res.status != 200 {
			t.Fatalf("turn %d: %+v %v", i, res, err)
		}
		if i == 0 {
			first = res.replica
		} else if res.replica != first {
			t.Fatalf("turn %d went to %s, the conversation started on %s", i, res.replica, first)
		}
	}
	var hits uint64
	for _, r := range e.pools["blue"] {
		h, _ := r.mock.PrefixCacheStats()
		hits += h
	}
	if hits == 0 {
		t.Fatal("the replicas' prefix caches never hit")
	}
	// Status and /metrics show what the balancer read; the first replica
	// reports hits once a scrape after the turns has run.
	waitFor(t, "the conversation's replica's hit rate in the status", 10*time.Second, func() bool {
		st, err := e.admin.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range st.Pools["blue"].Replicas {
			if r.URL == first && r.Engine != nil && r.Engine.PrefixCacheHitRate > 0 && !r.Engine.ScrapedAt.IsZero() {
				return true
			}
		}
		return false
	})
	body := scrapeMetrics(t, e)
	for _, want := range []string{
		`cutover_replica_engine_waiting{pool="blue",replica="` + first + `"} 0`,
		`cutover_replica_engine_running{pool="blue",replica="` + first + `"}`,
		`cutover_replica_kv_cache_usage{pool="blue",replica="` + first + `"}`,
		`cutover_replica_prefix_cache_hit_rate{pool="blue",replica="` + first + `"} 0.`,
		// The simulator has no batch limit: it never queues, so the batch is not known.
		`cutover_replica_engine_batch{known="false",pool="blue",replica="` + first + `"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
