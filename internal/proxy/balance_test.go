package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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
		s, err := mockllm.New(mockllm.Config{Model: "model-v1", Tokens: 24, KVBlocks: 256, TTFT: 50 * time.Millisecond, Seed: int64(i)})
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
	send := func(msgs []chatMsg) (chatMsg, error) {
		body, _ := json.Marshal(map[string]any{"model": "model-v1", "messages": msgs, "max_tokens": 24})
		resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			return chatMsg{}, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var answer struct {
			Choices []struct {
				Message chatMsg `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(b, &answer); resp.StatusCode != http.StatusOK || err != nil || len(answer.Choices) != 1 {
			return chatMsg{}, fmt.Errorf("status %d, answer %s: %v", resp.StatusCode, b, err)
		}
		return answer.Choices[0].Message, nil
	}
	// Waves of concurrent requests (the replicas take 50ms to a first
	// token, so a wave's requests overlap): 12 turns of distinct
	// conversations and 4 long one-shot prompts each, the same on every
	// run; between waves, one scrape. Within a wave only the gateway's
	// own counts move: past balancing.max_queue on one replica, the
	// rest spill, and a spilled conversation then sticks where it went.
	for wave := range 12 {
		scraper.Tick(context.Background())
		turns := rng.Perm(len(convs))[:12]
		var oneShots [4][]chatMsg
		for k := range oneShots {
			oneShots[k] = []chatMsg{{Role: "user", Content: seededWords(rng, 300)}}
		}
		for _, i := range turns {
			convs[i] = append(convs[i], chatMsg{Role: "user", Content: seededWords(rng, 20+rng.IntN(40))})
		}
		answers := make([]chatMsg, len(turns))
		var wg sync.WaitGroup
		errs := make(chan error, len(turns)+len(oneShots))
		// Send one at a time, each once the gateway has picked a replica
		// for the previous (the replicas' attempt counters say so), so
		// that the picks happen in the same order on every run while
		// the requests overlap.
		picked := func() (n uint64) {
			for _, r := range h.table.Load().Live.Pool.Replicas {
				n += r.Requests()
			}
			return n
		}
		sendOne := func(f func()) {
			before := picked()
			wg.Go(f)
			deadline := time.Now().Add(testWait)
			for picked() == before {
				if time.Now().After(deadline) {
					t.Fatalf("wave %d: the gateway picked no replica", wave)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		for k, i := range turns {
			sendOne(func() {
				a, err := send(convs[i])
				answers[k] = a
				errs <- err
			})
		}
		for _, msgs := range oneShots {
			sendOne(func() {
				_, err := send(msgs)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("wave %d: %v", wave, err)
			}
		}
		for k, i := range turns {
			convs[i] = append(convs[i], answers[k])
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
			if !(llm > rr+0.05) {
				t.Fatalf("llm hit rate %.3f does not beat round_robin's %.3f by 0.05", llm, rr)
			}
		})
	}
}
