package pool

import (
	"bytes"
	"hash/maphash"
	"math"
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
	// InFlight is the gateway's in-flight count on the replica when the
	// metrics were read (the larger of its counts before and after the
	// read): requests sent after it are not in the engine's numbers yet.
	InFlight int64
	// Slots is the engine's running batch as learned so far: the most
	// sequences seen running at once (an engine does not report its
	// --max-num-seqs; once it has queued, its peak is that limit, or what
	// its KV cache allowed). 0 before any ran.
	Slots float64
	// KVPerSeq is the KV use one running sequence adds, a moving average
	// of KV/Running over the scrapes; 0 before any ran. The llm balancer
	// adds it for each request sent since the scrape.
	KVPerSeq float64
	// Queued reports that a scrape within the last batchConfirmFor has
	// seen requests waiting in the engine: meanwhile Slots is taken as its
	// batch limit, and the gateway queue (LLMOptions.QueueTimeout) may hold
	// requests while the replica holds Slots of them. False: the limit is
	// unknown, or not confirmed lately, and the gateway holds no request
	// for this replica's sake. (An engine also queues for a moment below
	// its limit — vLLM between two steps, or when its token budget or KV
	// cache is short — so a limit learned then may be too low; held
	// requests keep the engine from queueing again, so the limit lapses,
	// requests flow, and Slots learns the engine's real peak.)
	Queued bool
	// QueuedAt is when a scrape last saw requests waiting in the engine;
	// zero before.
	QueuedAt time.Time
}

// batchConfirmFor is how long a replica's learned batch limit stands
// without a scrape seeing its engine queue again (see EngineLoad.Queued).
const batchConfirmFor = 5 * time.Second

// learn carries Slots and KVPerSeq on from prev (the replica's previous
// metrics, or nil) to e, a fresh scrape.
func (e *EngineLoad) learn(prev *EngineLoad) {
	e.Slots = e.Running
	var kvPerSeq float64
	if prev != nil {
		e.Slots = max(e.Slots, prev.Slots)
		e.QueuedAt = prev.QueuedAt
		kvPerSeq = prev.KVPerSeq
	}
	if e.Waiting >= 1 {
		e.QueuedAt = e.At
	}
	e.Queued = !e.QueuedAt.IsZero() && e.At.Sub(e.QueuedAt) <= batchConfirmFor
	if e.Running >= 1 {
		if v := e.KV / e.Running; kvPerSeq == 0 {
			kvPerSeq = v
		} else {
			kvPerSeq += (v - kvPerSeq) / 8
		}
	}
	e.KVPerSeq = kvPerSeq
}

// PrefixHitRate returns PrefixHits/PrefixQueries, 0 without queries.
func (e *EngineLoad) PrefixHitRate() float64 {
	if e == nil || e.PrefixQueries <= 0 {
		return 0
	}
	return e.PrefixHits / e.PrefixQueries
}

// SetEngineLoad publishes e as r's latest engine metrics; a request held
// in the gateway queue may find room in them.
func (r *Replica) SetEngineLoad(e *EngineLoad) {
	r.engine.Store(e)
	r.freed()
}

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
	DefaultQueueLength     = 1024
)

// maxPrefixBlocks bounds the blocks of a body hashed per request (with
// the default 256-byte blocks, the first 32 KiB of the prompt).
const maxPrefixBlocks = 128

// LLMOptions configures the llm balancer. Zero fields take the defaults
// above (so a weight cannot be 0; use a tiny one to all but disable it).
type LLMOptions struct {
	// QueueWeight, KVWeight and PrefixWeight weigh the three scores (see
	// LLM): QueueWeight multiplies the requests the new one would wait
	// behind plus the share of the batch in use; the KV score is 1-KV use
	// and the prefix score the share of the request's prefix blocks the
	// replica holds, both in [0, 1].
	QueueWeight, KVWeight, PrefixWeight float64
	// MaxQueue and MaxKV disqualify a replica whose queue (requests it
	// holds beyond its running batch, see LLM) is above MaxQueue or whose
	// KV use is above MaxKV.
	MaxQueue float64
	MaxKV    float64
	// StaleAfter is how old metrics may be before the replica counts as
	// saturated; default 3 metrics intervals.
	StaleAfter time.Duration
	// BlockBytes is the size of the prefix pieces hashed, from the
	// body's "messages" (or "prompt") on.
	BlockBytes int
	// AffinityEntries bounds the prefix → replicas table (rounded up to a
	// power of two).
	AffinityEntries int
	// QueueTimeout is how long PickWait may hold a request at the gateway
	// while every healthy replica of its pool is full; after it the
	// request goes where PickBody sends it. 0 means no gateway queue
	// (PickWait is PickBody).
	QueueTimeout time.Duration
	// QueueLength bounds the requests held per pool; one more goes where
	// PickBody sends it. 0 means DefaultQueueLength.
	QueueLength int
}

// LLM picks a replica by the engines' own load and by prefix affinity,
// as the llm-d endpoint picker does. Replicas whose metrics are stale,
// whose queue is above MaxQueue or whose KV cache is above MaxKV are out.
// For the rest it estimates how many requests each holds now (the
// gateway's own in flight, plus other clients' as the last scrape found
// them) against its running batch (EngineLoad.Slots), and so whether this
// one would wait there, and behind how many. Each scores
//
//	PrefixWeight × (leading prefix blocks it holds ÷ the request's blocks)
//	+ KVWeight × (1 − KV use, plus KVPerSeq per request sent since the scrape)
//	− QueueWeight × (wait + held ÷ batch)
//
// where wait is how many requests this one would wait behind there,
// itself included (0 with a free slot), and held ÷ batch the share of the
// batch in use (a fuller batch decodes slower for all in it). With the
// default weights (3, 2, 2) a conversation stays where its prefix is
// cached while the share of its prompt cached there and nowhere else
// outweighs the difference in batch use, and it waits for a slot there
// while another replica has one free only when over five sixths of its
// prompt is cached there alone. The best wins; equal scores go to the replica
// holding fewer requests, then rotate. With none left it falls back to
// LeastOutstanding. Pick and PickBody take no lock and do not allocate;
// Scraper feeds the metrics off the hot path.
type LLM struct {
	opts LLMOptions
	seed maphash.Seed
	aff  []affinitySlot
	mask uint64
	rot  atomic.Uint64
	now  func() time.Time
	q    waitQueue
}

// affinitySlot maps one prefix-block hash to the replicas it was sent to
// (a set of Replica bits). A hash lives in one of two slots; when both
// hold others, a newer hash takes an older one's place. The two words are written separately; a reader
// that sees the tag change across its read ignores the slot (a torn pair
// only misroutes a hint).
type affinitySlot struct {
	tag  atomic.Uint64
	reps atomic.Uint64
}

// replicaSeq numbers replicas for their bit in the prefix table: with
// more than 64 replicas some share a bit, which only blurs the hint.
var replicaSeq atomic.Uint64

func nextReplicaBit() uint64 { return 1 << ((replicaSeq.Add(1) - 1) & 63) }

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
	if opts.QueueLength <= 0 {
		opts.QueueLength = DefaultQueueLength
	}
	n := uint64(1) << bits.Len64(uint64(opts.AffinityEntries-1))
	l := &LLM{opts: opts, seed: maphash.MakeSeed(), aff: make([]affinitySlot, n), mask: n - 1, now: time.Now}
	l.q.l = l
	return l
}

// Options returns the options in use, defaults applied.
func (l *LLM) Options() LLMOptions { return l.opts }

// Pick implements Picker, without prefix affinity.
func (l *LLM) Pick(rs []*Replica, skip *Replica) *Replica { return l.PickBody(rs, skip, nil) }

// llmLoad is what the llm balancer estimates of one replica now.
type llmLoad struct {
	ok    bool    // fresh metrics, within the thresholds
	fresh bool    // fresh metrics (ok or over a threshold)
	full  bool    // no free slot in a batch whose limit is known (EngineLoad.Queued), or over a threshold
	wait  float64 // requests this one would queue behind, itself included; 0 with a free slot
	busy  float64 // share of the batch in use (above 1 while requests wait)
	kv    float64 // KV use with the requests sent since the scrape
	count float64 // requests the replica holds (running and waiting)
}

// estimate returns r's load now from its last metrics and the gateway's
// requests since.
func (l *LLM) estimate(r *Replica, now time.Time) llmLoad {
	e := r.engine.Load()
	if e == nil || now.Sub(e.At) > l.opts.StaleAfter {
		return llmLoad{} // stale: saturated
	}
	// What the replica holds: the gateway's own requests now, exactly,
	// plus those of other clients as the scrape found them (what the
	// engine held beyond the gateway's count then; never below 0, so that
	// a request still on its way to the engine at the scrape does not
	// make a full replica look free).
	inflight := r.InFlight()
	count := float64(inflight) + max(e.Running+e.Waiting-float64(e.InFlight), 0)
	since := float64(inflight - e.InFlight) // sent minus finished since the scrape
	batch := max(e.Slots, e.Running)
	queue := max(count-batch, 0)
	// The KV use now: the scrape's, with what each request sent since
	// adds and each one finished since frees (vLLM frees a finished
	// sequence's blocks at once; cached prefix blocks count as free).
	// The threshold looks at this, not at the scrape's: a replica whose
	// batch was full at the scrape and has finished since has room again
	// before the next scrape says so.
	kv := min(max(e.KV+since*e.KVPerSeq, 0), 1)
	if queue > l.opts.MaxQueue || kv > l.opts.MaxKV {
		return llmLoad{fresh: true, full: true}
	}
	wait := max(count+1-batch, 0)
	return llmLoad{ok: true, fresh: true, full: e.Queued && wait > 0, wait: wait, busy: count / max(batch, 1),
		kv: kv, count: count}
}

// PickBody implements BodyPicker.
func (l *LLM) PickBody(rs []*Replica, skip *Replica, body []byte) *Replica {
	if len(rs) == 0 {
		return nil
	}
	var hashes, holders [maxPrefixBlocks]uint64
	n := l.prefixHashes(body, hashes[:])
	known := l.holders(hashes[:n], holders[:])
	best, _ := l.best(rs, skip, n, holders[:known], false)
	if best == nil {
		best = LeastOutstanding{}.Pick(rs, skip)
	}
	l.rememberAll(hashes[:n], best)
	return best
}

// holders writes to out which replicas hold how much of a prefix: it
// walks the chained block hashes until one is unknown, keeping each
// block's holders, and returns how many it wrote.
func (l *LLM) holders(hashes, out []uint64) int {
	known := 0
	for known < len(hashes) {
		out[known] = l.lookup(hashes[known])
		if out[known] == 0 {
			break
		}
		known++
	}
	return known
}

// rememberAll records that the prefix of hashes went to r (nil: nothing).
func (l *LLM) rememberAll(hashes []uint64, r *Replica) {
	if r == nil {
		return
	}
	for _, h := range hashes {
		l.remember(h, r.bit)
	}
}

// best scores the healthy replicas of rs but skip for a request of n
// prefix blocks of which holders says who holds the leading ones, and
// returns the best of those with fresh metrics within the thresholds
// (with freeOnly, of those with a free slot), nil when none. hold reports
// that the gateway may hold the request (see LLMOptions.QueueTimeout):
// at least one replica qualifies for it, and every healthy one has fresh
// metrics and is full (no free slot in a batch whose limit is known, or
// over a threshold).
func (l *LLM) best(rs []*Replica, skip *Replica, n int, holders []uint64, freeOnly bool) (best *Replica, hold bool) {
	now := l.now()
	var bestLoad llmLoad
	bestScore := math.Inf(-1)
	start := l.rot.Add(1)
	hold = true
	healthy := false
	for k := range len(rs) {
		r := rs[(start+uint64(k))%uint64(len(rs))]
		if r == skip || !r.Healthy() {
			continue
		}
		healthy = true
		ld := l.estimate(r, now)
		hold = hold && ld.fresh && ld.full
		if !ld.ok || freeOnly && ld.wait > 0 {
			continue
		}
		score := l.opts.KVWeight*(1-ld.kv) - l.opts.QueueWeight*(ld.wait+ld.busy)
		if n > 0 {
			depth := 0
			for depth < len(holders) && holders[depth]&r.bit != 0 {
				depth++
			}
			score += l.opts.PrefixWeight * float64(depth) / float64(n)
		}
		if score > bestScore+scoreTie || score > bestScore-scoreTie && ld.count < bestLoad.count {
			best, bestScore, bestLoad = r, score, ld
		}
	}
	return best, hold && healthy
}

// scoreTie is how close two scores are to count as equal.
const scoreTie = 1e-9

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

// slots returns the two table slots prefix-block hash h may live in (two
// choices, so that a few hashes sharing one slot do not evict each other).
func (l *LLM) slots(h uint64) (*affinitySlot, *affinitySlot) {
	return &l.aff[h&l.mask], &l.aff[(h>>32|h<<32)&l.mask]
}

// lookup returns the replicas (bits) prefix-block hash h was sent to,
// 0 when unknown.
func (l *LLM) lookup(h uint64) uint64 {
	a, b := l.slots(h)
	if reps := a.read(h); reps != 0 {
		return reps
	}
	return b.read(h)
}

// read returns s's replicas if it holds hash h, else 0.
func (s *affinitySlot) read(h uint64) uint64 {
	if s.tag.Load() != h {
		return 0
	}
	reps := s.reps.Load()
	if s.tag.Load() != h {
		return 0
	}
	return reps
}

// remember adds the replica with bit to those h was sent to: in the slot
// holding h, else in an empty one of its two, else in place of the first
// one's hash.
func (l *LLM) remember(h, bit uint64) {
	a, b := l.slots(h)
	for _, s := range [2]*affinitySlot{a, b} {
		if s.tag.Load() == h {
			if s.reps.Load()&bit == 0 {
				s.reps.Or(bit)
			}
			return // the usual case: no write, no cache-line bouncing
		}
	}
	s := a
	if a.tag.Load() != 0 && b.tag.Load() == 0 {
		s = b
	}
	s.tag.Store(0)
	s.reps.Store(bit)
	s.tag.Store(h)
}

var _ BodyPicker = (*LLM)(nil)
