package mockllm

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// words returns n distinct words starting at index from.
func words(from, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = "w" + strconv.Itoa(from+i)
	}
	return strings.Join(w, " ")
}

func hashesOf(blockSize int, msgs ...string) []uint64 {
	b := blockHasher{blockSize: blockSize}
	for _, m := range msgs {
		b.add(m)
	}
	return b.hashes
}

func TestBlockHasherChains(t *testing.T) {
	a := hashesOf(4, words(0, 10))           // 2 full blocks, 2 words left over
	b := hashesOf(4, words(0, 8)+" x y z q") // same 2 blocks, a different third
	c := hashesOf(4, "other "+words(1, 9))   // first word differs
	if len(a) != 2 || len(b) != 3 {
		t.Fatalf("blocks: %d and %d, want 2 and 3 (partial blocks are not hashed)", len(a), len(b))
	}
	if a[0] != b[0] || a[1] != b[1] {
		t.Errorf("a shared prefix of 8 words gave different block hashes: %x vs %x", a, b)
	}
	if c[0] == a[0] || c[1] == a[1] {
		t.Errorf("a different first block must change every later hash (chained): %x vs %x", c, a)
	}
	// Whitespace does not matter, message boundaries do.
	if x, y := hashesOf(4, words(0, 8)), hashesOf(4, strings.ReplaceAll(words(0, 8), " ", "\n  ")); x[1] != y[1] {
		t.Errorf("whitespace changed the hashes")
	}
	if x, y := hashesOf(4, words(0, 8)), hashesOf(4, words(0, 4), words(4, 4)); x[1] == y[1] {
		t.Errorf("splitting the words over two messages kept the hash")
	}
}

func TestKVCacheAccounting(t *testing.T) {
	c := newKVCache(10, 4)
	p := hashesOf(4, words(0, 12)) // 3 blocks
	cached, held := c.admit(p, 12, 12+4)
	if cached != 0 || held != 4 {
		t.Fatalf("cold admit: cached %d held %d, want 0 and 4", cached, held)
	}
	if u := c.usage(); u != 0.4 {
		t.Errorf("usage with 4 of 10 blocks held = %v", u)
	}
	c.release(held)
	if u := c.usage(); u != 0 {
		t.Errorf("usage after release = %v", u)
	}
	if n := c.cachedBlocks(); n != 3 {
		t.Errorf("cached blocks after release = %d, want 3", n)
	}
	// The next turn resends the conversation and adds to it.
	p2 := hashesOf(4, words(0, 20)) // 5 blocks, the first 3 cached
	cached, held = c.admit(p2, 20, 24)
	if cached != 12 || held != 6 {
		t.Fatalf("warm admit: cached %d held %d, want 12 and 6", cached, held)
	}
	// Held blocks leave room for only 4 cached ones: the oldest goes.
	if n := c.cachedBlocks(); n != 4 {
		t.Errorf("cached blocks while 6 of 10 are held = %d, want 4", n)
	}
	c.release(held)
	if h, q := c.hits.Load(), c.queries.Load(); h != 12 || q != 32 {
		t.Errorf("hits/queries = %d/%d, want 12/32", h, q)
	}
	// A whole prompt in cache still computes its last token.
	p3 := hashesOf(4, words(100, 4))
	c.admit(p3, 4, 5)
	if cached, _ := c.admit(p3, 4, 5); cached != 3 {
		t.Errorf("fully cached 4-token prompt: cached %d, want 3", cached)
	}
}

func TestKVCacheLRUEviction(t *testing.T) {
	c := newKVCache(4, 1)
	one := func(s string) []uint64 { return hashesOf(1, s) }
	for _, w := range []string{"a", "b", "c", "d"} {
		_, h := c.admit(one(w), 1, 0)
		c.release(h)
	}
	c.admit(one("a"), 2, 0) // touch a: b is now the oldest
	_, h := c.admit(one("e"), 1, 0)
	c.release(h)
	for w, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true, "e": true} {
		if got := c.entries[one(w)[0]] != nil; got != want {
			t.Errorf("%s cached = %v, want %v", w, got, want)
		}
	}
}

func TestPrefillAndDecodeDelay(t *testing.T) {
	s, err := New(Config{Model: testModel, TTFT: 5 * time.Millisecond, ITL: 2 * time.Millisecond,
		PrefillPerToken: time.Millisecond, ITLPerSeq: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uncached int
		want     time.Duration
	}{{0, 5 * time.Millisecond}, {300, 305 * time.Millisecond}} {
		if got := s.prefillDelay(tc.uncached); got != tc.want {
			t.Errorf("prefillDelay(%d) = %v, want %v", tc.uncached, got, tc.want)
		}
	}
	for _, tc := range []struct {
		running int64
		want    time.Duration
	}{{0, 2 * time.Millisecond}, {1, 2 * time.Millisecond}, {11, 3 * time.Millisecond}} {
		if got := s.decodeDelay(tc.running); got != tc.want {
			t.Errorf("decodeDelay(%d) = %v, want %v", tc.running, got, tc.want)
		}
	}
}

func TestConfigRejectsNegativeKV(t *testing.T) {
	for _, cfg := range []Config{
		{Model: "m", KVBlocks: -1}, {Model: "m", BlockSize: -1},
		{Model: "m", PrefillPerToken: -1}, {Model: "m", ITLPerSeq: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a negative value", cfg)
		}
	}
}

// metricValue reads one unlabelled-by-us metric's value from /metrics.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	_, _, body := do(t, "GET", url+"/metrics", "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{[^}]*\} (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s not in /metrics:\n%s", name, body)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPrefixCacheOverHTTP(t *testing.T) {
	_, ts := newTestServer(t, Config{KVBlocks: 64, BlockSize: 4})
	prompt := words(0, 21) // 5 full blocks
	for range 2 {
		if code, _, body := do(t, "POST", ts.URL+"/v1/chat/completions", chatBody(testModel, prompt, "")); code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
	}
	if q := metricValue(t, ts.URL, "vllm:prefix_cache_queries_total"); q != 42 {
		t.Errorf("queries = %v, want 42", q)
	}
	if h := metricValue(t, ts.URL, "vllm:prefix_cache_hits_total"); h != 20 {
		t.Errorf("hits = %v, want 20", h)
	}
	if u := metricValue(t, ts.URL, "vllm:kv_cache_usage_perc"); u != 0 {
		t.Errorf("kv usage when idle = %v", u)
	}
}

func TestAnswerBlocksCachedForNextTurn(t *testing.T) {
	s, ts := newTestServer(t, Config{KVBlocks: 64, BlockSize: 4, Tokens: 8})
	prompt := words(0, 10)
	code, _, body := do(t, "POST", ts.URL+"/v1/chat/completions", chatBody(testModel, prompt, ""))
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	answer := Answer(testModel, prompt, 8)
	if !strings.Contains(body, answer) {
		t.Fatalf("answer %q not in %s", answer, body)
	}
	next := `{"model":"` + testModel + `","messages":[{"role":"user","content":"` + prompt +
		`"},{"role":"assistant","content":"` + answer + `"},{"role":"user","content":"` + words(50, 4) + `"}]}`
	if code, _, body := do(t, "POST", ts.URL+"/v1/chat/completions", next); code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	// 10 prompt + 8 answer words = 4 full blocks of 4, all found.
	if h, q := s.PrefixCacheStats(); h != 16 || q != 10+22 {
		t.Fatalf("hits/queries = %d/%d, want 16/32", h, q)
	}
}
