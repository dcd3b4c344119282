package pool

import (
	"bytes"
	"hash/maphash"
	"math/bits"
	"sync/atomic"
	"time"
)

// EngineLoad is what a replica's inference engine last reported on its
// /metrics (see Scraper), with the gateway's own count at that moment.
// A value is immutable once published with Replica.SetEngineLoad.
type EngineLoad struct {
	// At is when the metrics were read.
	At time.Time
	// Waiting and Running are vllm:num_requests_waiting and
	// vllm:num_requests_running (SGLang: sglang:num_queue_reqs and
	// sglang:num_running_reqs).
	Waiting, Running float64
	// KV is the KV-cache use, 0 to 1: vllm:kv_cache_usage_perc, or the
	// older vllm:gpu_cache_usage_perc (SGLang: sglang:token_usage).
	KV float64
	// PrefixHits and PrefixQueries are the engine's prefix-cache counters
	// in tokens (vllm:prefix_cache_hits_total, vllm:prefix_cache_queries_total);
	// both 0 when it does not report them.
	PrefixHits, PrefixQueries float64
	// InFlight is the gateway's in-flight count on the replica at At:
	// requests sent after it are not in the engine's numbers yet.
	InFlight int64
}

// PrefixHitRate returns PrefixHits/PrefixQueries, 0 without queries.
func (e *EngineLoad) PrefixHitRate() float64 {
	if e == nil || e.PrefixQueries <= 0 {
		return 0
	}
	return e.PrefixHits / e.PrefixQueries
}

// SetEngineLoad publishes e as r's latest engine metrics.
func (r *Replica) SetEngineLoad(e *EngineLoad) { r.engine.Store(e) }

// EngineLoad returns r's latest engine metrics, nil before the first scrape.
func (r *Replica) EngineLoad() *EngineLoad { return r.engine.Load() }

// BodyPicker is a Picker that also reads the request body (to route by
// its prompt's prefix). The proxy calls PickBody when its picker is one.
type BodyPicker interface {
	Picker
	// PickBody is Pick for a request whose body is body (nil when the
	// proxy did not buffer it).
	PickBody(rs []*Replica, skip *Replica, body []byte) *Replica
}

// Defaults of LLMOptions.
const (
	DefaultMetricsInterval = 500 * time.Millisecond
	DefaultQueueWeight     = 2
	DefaultKVWeight        = 2
	DefaultPrefixWeight    = 3
	DefaultMaxQueue        = 5
	DefaultMaxKV           = 0.8
	DefaultBlockBytes      = 256
	DefaultAffinityEntries = 1 << 16
)

// maxPrefixBlocks bounds the blocks of a body hashed per request (with
// the default 256-byte blocks, the first 32 KiB of the prompt).
const maxPrefixBlocks = 128

// LLMOptions configures the llm balancer. Zero fields take the defaults
// above (so a weight cannot be 0; use a tiny one to all but disable it).
type LLMOptions struct {
	// QueueWeight, KVWeight and PrefixWeight weigh the three scores, each
	// in [0, 1]: 1/(1+queue), 1-KV use, and the fraction of the request's
	// prefix blocks last sent to the replica.
	QueueWeight, KVWeight, PrefixWeight float64
	// MaxQueue and MaxKV disqualify a replica whose queue (engine's
	// waiting plus the gateway's requests since the scrape) is above
	// MaxQueue or whose KV use is above MaxKV.
	MaxQueue float64
	MaxKV    float64
	// StaleAfter is how old metrics may be before the replica counts as
	// saturated; default 3 metrics intervals.
	StaleAfter time.Duration
	// BlockBytes is the size of the prefix pieces hashed, from the
	// body's "messages" (or "prompt") on.
	BlockBytes int
	// AffinityEntries bounds the prefix → replica table (rounded up to a
	// power of two).
	AffinityEntries int
}

// LLM picks a replica by the engines' own load and by prefix affinity,
// as the llm-d endpoint picker does: replicas whose metrics are stale,
// whose queue is above MaxQueue or whose KV cache is above MaxKV are out;
// the rest are scored on queue, KV use and how much of the request's
// prompt prefix was last sent to them; the best wins (ties rotate). With
// none left, it falls back to LeastOutstanding. Pick and PickBody take no
// lock and do not allocate; Scraper feeds the metrics off the hot path.
type LLM struct {
	opts LLMOptions
	seed maphash.Seed
	aff  []affinitySlot
	mask uint64
	rot  atomic.Uint64
	now  func() time.Time
}

// affinitySlot maps one prefix-block hash to the replica it was last sent
// to. The table is direct-mapped: a newer hash takes an older one's slot.
// The two words are written separately; a reader that sees the tag change
// across its read ignores the slot (a torn pair only misroutes a hint).
type affinitySlot struct {
	tag atomic.Uint64
	rep atomic.Pointer[Replica]
}

// NewLLM returns an llm balancer with opts (zero fields defaulted).
func NewLLM(opts LLMOptions) *LLM {
	if opts.QueueWeight == 0 {
		opts.QueueWeight = DefaultQueueWeight
	}
	if opts.KVWeight == 0 {
		opts.KVWeight = DefaultKVWeight
	}
	if opts.PrefixWeight == 0 {
		opts.PrefixWeight = DefaultPrefixWeight
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if opts.MaxKV == 0 {
		opts.MaxKV = DefaultMaxKV
	}
	if opts.StaleAfter == 0 {
		opts.StaleAfter = 3 * DefaultMetricsInterval
	}
	if opts.BlockBytes == 0 {
		opts.BlockBytes = DefaultBlockBytes
	}
	if opts.AffinityEntries <= 0 {
		opts.AffinityEntries = DefaultAffinityEntries
	}
	n := uint64(1) << bits.Len64(uint64(opts.AffinityEntries-1))
	return &LLM{opts: opts, seed: maphash.MakeSeed(), aff: make([]affinitySlot, n), mask: n - 1, now: time.Now}
}

// Options returns the options in use, defaults applied.
func (l *LLM) Options() LLMOptions { return l.opts }

// Pick implements Picker, without prefix affinity.
func (l *LLM) Pick(rs []*Replica, skip *Replica) *Replica { return l.PickBody(rs, skip, nil) }

// PickBody implements BodyPicker.
func (l *LLM) PickBody(rs []*Replica, skip *Replica, body []byte) *Replica {
	if len(rs) == 0 {
		return nil
	}
	var hashes [maxPrefixBlocks]uint64
	n := l.prefixHashes(body, hashes[:])
	// Who holds how much of this prefix: walk the chained block hashes
	// until one is unknown; remember up to len(holders) replicas with
	// the depth each was last seen at.
	var holders [4]*Replica
	var depths [4]int
	for i := range n {
		r := l.lookup(hashes[i])
		if r == nil {
			break
		}
		for k := range holders {
			if holders[k] == nil || holders[k] == r {
				holders[k], depths[k] = r, i+1
				break
			}
		}
	}

	now := l.now()
	start := l.rot.Add(1)
	var best *Replica
	bestScore := -1.0
	for k := range len(rs) {
		r := rs[(start+uint64(k))%uint64(len(rs))]
		if r == skip || !r.Healthy() {
			continue
		}
		e := r.engine.Load()
		if e == nil || now.Sub(e.At) > l.opts.StaleAfter {
			continue // stale: saturated
		}
		queue := e.Waiting + float64(max(r.InFlight()-e.InFlight, 0))
		if queue > l.opts.MaxQueue || e.KV > l.opts.MaxKV {
			continue
		}
		score := l.opts.QueueWeight/(1+queue) + l.opts.KVWeight*(1-e.KV)
		if n > 0 {
			for k, h := range holders {
				if h == r {
					score += l.opts.PrefixWeight * float64(depths[k]) / float64(n)
					break
				}
			}
		}
		if score > bestScore {
			best, bestScore = r, score
		}
	}
	if best == nil {
		best = LeastOutstanding{}.Pick(rs, skip)
	}
	if best != nil {
		for i := range n {
			l.remember(hashes[i], best)
		}
	}
	return best
}

// prefixHashes hashes body's prompt, from its "messages" (or "prompt")
// member on, in full blocks of BlockBytes, each hash chained to the
// previous so that it stands for the whole prefix up to its block's end.
// It returns how many hashes it wrote to out.
func (l *LLM) prefixHashes(body []byte, out []uint64) int {
	i := bytes.Index(body, []byte(`"messages"`))
	if i < 0 {
		i = bytes.Index(body, []byte(`"prompt"`))
	}
	if i < 0 {
		return 0
	}
	b, bs := body[i:], l.opts.BlockBytes
	var h uint64
	n := 0
	for len(b) >= bs && n < len(out) {
		h = maphash.Bytes(l.seed, b[:bs]) ^ bits.RotateLeft64(h, 17)
		out[n] = h | 1 // 0 marks an empty slot
		n++
		b = b[bs:]
	}
	return n
}

func (l *LLM) lookup(h uint64) *Replica {
	s := &l.aff[h&l.mask]
	if s.tag.Load() != h {
		return nil
	}
	r := s.rep.Load()
	if s.tag.Load() != h {
		return nil
	}
	return r
}

func (l *LLM) remember(h uint64, r *Replica) {
	s := &l.aff[h&l.mask]
	if s.tag.Load() == h && s.rep.Load() == r {
		return // the usual case: no write, no cache-line bouncing
	}
	s.tag.Store(0)
	s.rep.Store(r)
	s.tag.Store(h)
}

var _ BodyPicker = (*LLM)(nil)
