package proxy

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
)

// chatMsg is one message of a simulated conversation.
type chatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// seededWords returns n words drawn from rng.
func seededWords(rng *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = "tok" + string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26)))
	}
	return strings.Join(w, " ")
}

// prefixHitRate runs a fixed seeded workload of multi-turn chats sharing a
// system prompt, mixed with one-shot long prompts, through a Handler with
// picker in front of four simulated replicas with prefix caches, and
// returns the replicas' prefix-cache hit rate (tokens hit / looked up).
func prefixHitRate(t *testing.T, picker pool.Picker, start func(*testing.T, *Handler) string) float64 {
	t.Helper()
	var sims []*mockllm.Server
	var urls []string
	for i := range 4 {
		s, err := mockllm.New(mockllm.Config{Model: "model-v1", Tokens: 24, KVBlocks: 256, Seed: int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)
		sims, urls = append(sims, s), append(urls, ts.URL)
	}
	h := newHandler(t, Options{Picker: picker}, "", urls...)
	addr := start(t, h)
	scraper := &pool.Scraper{Targets: func() []pool.Target {
		var ts []pool.Target
		for _, r := range h.table.Load().Live.Pool.Replicas {
			ts = append(ts, pool.Target{Replica: r})
		}
		return ts
	}}

	rng := rand.New(rand.NewPCG(7, 11))
	system := "You are a careful assistant. " + seededWords(rng, 120)
	convs := make([][]chatMsg, 16)
	for i := range convs {
		convs[i] = []chatMsg{{Role: "system", Content: system}}
	}
	client := &http.Client{}
	for n := range 120 {
		if n%4 == 0 {
			scraper.Tick(context.Background())
		}
		var msgs []chatMsg
		i := rng.IntN(len(convs) + 2)
		if i >= len(convs) { // a long one-shot prompt
			msgs = []chatMsg{{Role: "user", Content: seededWords(rng, 300)}}
		} else {
			convs[i] = append(convs[i], chatMsg{Role: "user", Content: seededWords(rng, 20+rng.IntN(40))})
			msgs = convs[i]
		}
		body, _ := json.Marshal(map[string]any{"model": "model-v1", "messages": msgs, "max_tokens": 24})
		resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", n, resp.StatusCode, b)
		}
		if i < len(convs) {
			var answer struct {
				Choices []struct {
					Message chatMsg `json:"message"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(b, &answer); err != nil || len(answer.Choices) != 1 {
				t.Fatalf("request %d: bad answer %s: %v", n, b, err)
			}
			convs[i] = append(convs[i], answer.Choices[0].Message)
		}
	}
	var hits, queries uint64
	for _, s := range sims {
		h, q := s.PrefixCacheStats()
		hits, queries = hits+h, queries+q
	}
	return float64(hits) / float64(queries)
}

// TestLLMBalancerBeatsRoundRobinOnPrefixHits runs one fixed seeded
// multi-turn workload through round_robin and through llm, on both
// frontends: llm, which sends a conversation's next turn where its prefix
// is cached, must hit the replicas' prefix caches more often.
func TestLLMBalancerBeatsRoundRobinOnPrefixHits(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rr := prefixHitRate(t, &pool.RoundRobin{}, fe.start)
			llm := prefixHitRate(t, pool.NewLLM(pool.LLMOptions{}), fe.start)
			t.Logf("prefix-cache hit rate: round_robin %.3f, llm %.3f", rr, llm)
			if !(llm > rr+0.1) {
				t.Fatalf("llm hit rate %.3f does not beat round_robin's %.3f by 0.1", llm, rr)
			}
		})
	}
}
