package mockllm

// The simulated prefix cache and KV budget, and the timing that depends on
// them: prefill time proportional to the prompt tokens not found in the
// cache, and a decode step that slows down as the running batch grows.

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBlockSize is the tokens per KV block when Config.BlockSize is 0
// (vLLM's default block size).
const DefaultBlockSize = 16

// blockHasher appends the chained hashes of a prompt's full blocks of
// blockSize words: hash i covers every word up to the end of block i, so
// two prompts share block i's hash only when they share its whole prefix,
// as vLLM's prefix-cache block hashes do. Messages are fed one by one.
type blockHasher struct {
	blockSize int
	h         uint64
	inBlock   int // words of the current, incomplete block
	hashes    []uint64
}

// add feeds one message (or the whole prompt) to the hasher; consecutive
// messages are separated as if by a message boundary token.
func (b *blockHasher) add(s string) {
	b.h = fnvByte(b.h, 0x1e)
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			if inWord {
				b.endWord()
			}
			inWord = false
		default:
			inWord = true
			b.h = fnvByte(b.h, c)
		}
	}
	if inWord {
		b.endWord()
	}
}

// endWord closes a word (a simulated token) and, at a block boundary,
// records the block's hash.
func (b *blockHasher) endWord() {
	b.h = fnvByte(b.h, ' ')
	b.inBlock++
	if b.inBlock == b.blockSize {
		b.hashes = append(b.hashes, mix64(b.h))
		b.inBlock = 0
	}
}

// kvCache is one replica's KV-block budget and prefix cache. Blocks of
// running sequences are in use; blocks of finished ones stay cached for
// reuse until evicted, least recently used first, when space is needed.
// Its methods are safe for concurrent use.
type kvCache struct {
	blockSize int
	capacity  int // blocks in all

	hits    atomic.Uint64 // prompt tokens found in the cache
	queries atomic.Uint64 // prompt tokens looked up

	mu      sync.Mutex
	used    int                 // blocks held by running sequences
	entries map[uint64]*kvEntry // cached prefix blocks by hash
	lru     kvEntry             // sentinel of the recency list; lru.next is the oldest
}

// kvEntry is one cached block in the recency list.
type kvEntry struct {
	hash       uint64
	prev, next *kvEntry
}

// newKVCache returns an empty cache of capacity blocks of blockSize tokens.
func newKVCache(capacity, blockSize int) *kvCache {
	c := &kvCache{blockSize: blockSize, capacity: capacity, entries: make(map[uint64]*kvEntry)}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

// admit starts a sequence of promptTokens prompt tokens (whose full blocks
// hash to hashes) and totalTokens in all (prompt and answer): it counts
// the leading blocks found in the cache, marks the prompt's blocks most
// recently used, and holds the sequence's blocks until release. It returns
// the prompt tokens served from the cache (at most promptTokens-1: the
// last token is always computed, as in vLLM) and the blocks to release.
func (c *kvCache) admit(hashes []uint64, promptTokens, totalTokens int) (cached, blocks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hit := 0
	for hit < len(hashes) && c.entries[hashes[hit]] != nil {
		hit++
	}
	cached = min(hit*c.blockSize, max(promptTokens-1, 0))
	c.hits.Add(uint64(cached))
	c.queries.Add(uint64(promptTokens))

	blocks = (totalTokens + c.blockSize - 1) / c.blockSize
	c.used += blocks
	for _, h := range hashes {
		e := c.entries[h]
		if e == nil {
			e = &kvEntry{hash: h}
			c.entries[h] = e
		} else {
			e.unlink()
		}
		e.linkBefore(&c.lru) // most recent
	}
	c.evictLocked()
	return cached, blocks
}

// keep caches the blocks a sequence filled while decoding (hashes chained
// on from its prompt's), as vLLM keeps a finished sequence's full blocks:
// the next turn of a chat, which resends the answer, finds them.
func (c *kvCache) keep(hashes []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hashes {
		if e := c.entries[h]; e != nil {
			e.unlink()
			e.linkBefore(&c.lru)
			continue
		}
		e := &kvEntry{hash: h}
		c.entries[h] = e
		e.linkBefore(&c.lru)
	}
	c.evictLocked()
}

// answerBlocks returns the hashes of the full blocks the answer of j adds
// after its prompt, as a chat's next turn would hash them (the answer is
// one more message).
func (s *Server) answerBlocks(j *job, produced int) []uint64 {
	if j.hasher == nil || produced <= 0 {
		return nil
	}
	b := *j.hasher
	b.hashes = b.hashes[len(b.hashes):]
	b.add(string(appendAnswer(nil, j.seed, produced)))
	return b.hashes
}

// release gives back the blocks a finished sequence held; its prompt
// blocks stay cached.
func (c *kvCache) release(blocks int) {
	c.mu.Lock()
	c.used -= blocks
	c.evictLocked()
	c.mu.Unlock()
}

// evictLocked drops the least recently used cached blocks until the cached
// ones fit in what running sequences leave free.
func (c *kvCache) evictLocked() {
	room := max(c.capacity-c.used, 0)
	for len(c.entries) > room {
		e := c.lru.next
		e.unlink()
		delete(c.entries, e.hash)
	}
}

// usage returns the fraction of blocks held by running sequences, in [0, 1].
func (c *kvCache) usage() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return min(1, float64(c.used)/float64(c.capacity))
}

// cachedBlocks returns how many prefix blocks are cached now.
func (c *kvCache) cachedBlocks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (e *kvEntry) unlink() {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (e *kvEntry) linkBefore(at *kvEntry) {
	e.prev, e.next = at.prev, at
	at.prev.next = e
	at.prev = e
}

// prefillDelay is the time to first token of a sequence with uncached
// prompt tokens still to compute: the base TTFT plus PrefillPerToken for
// each of them.
func (s *Server) prefillDelay(uncached int) time.Duration {
	return time.Duration(s.faults.ttft.Load()) + s.cfg.PrefillPerToken*time.Duration(uncached)
}

// decodeDelay is the time of one decode step with running sequences in the
// batch: the base ITL plus ITLPerSeq for every other running sequence.
func (s *Server) decodeDelay(running int64) time.Duration {
	return time.Duration(s.faults.itl.Load()) + s.cfg.ITLPerSeq*time.Duration(max(running-1, 0))
}

// PrefixCacheStats returns the prompt tokens served from the prefix cache
// and those looked up, since New; both 0 without Config.KVBlocks.
func (s *Server) PrefixCacheStats() (hits, queries uint64) {
	if s.kv == nil {
		return 0, 0
	}
	return s.kv.hits.Load(), s.kv.queries.Load()
}
