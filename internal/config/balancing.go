package config

import (
	"fmt"
	"math"
	"time"
)

// Balancing tunes the llm balancer (balancer: llm), which scores every
// healthy replica on its engine's scraped metrics and on prefix affinity.
type Balancing struct {
	// MetricsInterval is how often each replica's /metrics is read.
	// Default 500ms.
	MetricsInterval Duration `yaml:"metrics_interval"`
	// StaleAfter is how old a replica's metrics may be before it counts
	// as saturated. Default 3 × metrics_interval (0).
	StaleAfter Duration `yaml:"stale_after"`
	// QueueWeight, KVWeight and PrefixWeight weigh the scores: QueueWeight
	// multiplies what is subtracted for load, the requests a new one would
	// wait behind on the replica (itself included; 0 with a free slot in
	// its batch) plus the share of its batch in use; KVWeight multiplies
	// 1-KV use and PrefixWeight the share of the request's prompt prefix
	// sent to the replica before. Defaults 2, 2, 3 (the llm-d endpoint
	// picker's).
	QueueWeight  float64 `yaml:"queue_weight"`
	KVWeight     float64 `yaml:"kv_weight"`
	PrefixWeight float64 `yaml:"prefix_weight"`
	// MaxQueue disqualifies a replica holding more requests than this
	// beyond its running batch (the gateway's own in flight plus other
	// clients' as scraped, against the batch it was seen running).
	// Default 5.
	MaxQueue float64 `yaml:"max_queue"`
	// MaxKV disqualifies a replica whose KV-cache use is above it.
	// Default 0.8.
	MaxKV float64 `yaml:"max_kv"`
	// PrefixBlockBytes is the size of the prompt pieces hashed for prefix
	// affinity. Default 256.
	PrefixBlockBytes int `yaml:"prefix_block_bytes"`
	// AffinityEntries bounds the prefix → replica table. Default 65536.
	AffinityEntries int `yaml:"affinity_entries"`
	// QueueTimeout is how long the gateway may hold a request while every
	// healthy replica of its pool is at its batch limit, to send it to the
	// first replica that frees a slot; after it the request goes to the
	// best replica as without the queue. 0 turns the gateway queue off.
	// Default 2s.
	QueueTimeout Duration `yaml:"queue_timeout"`
	// QueueLength bounds the requests held per pool; one more goes to the
	// best replica at once. Default 1024.
	QueueLength int `yaml:"queue_length"`
}

// defaultBalancing returns the balancing defaults.
func defaultBalancing() Balancing {
	return Balancing{
		MetricsInterval:  Duration(500 * time.Millisecond),
		QueueWeight:      2,
		KVWeight:         2,
		PrefixWeight:     3,
		MaxQueue:         5,
		MaxKV:            0.8,
		PrefixBlockBytes: 256,
		AffinityEntries:  1 << 16,
		QueueTimeout:     Duration(2 * time.Second),
		QueueLength:      1024,
	}
}

// validate checks the balancing keys.
func (b *Balancing) validate() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "balancing." + key, Msg: fmt.Sprintf(format, args...)})
	}
	if b.MetricsInterval <= 0 {
		add("metrics_interval", "must be positive, got %s", b.MetricsInterval)
	}
	if b.StaleAfter < 0 {
		add("stale_after", "must not be negative, got %s", b.StaleAfter)
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"queue_weight", b.QueueWeight}, {"kv_weight", b.KVWeight}, {"prefix_weight", b.PrefixWeight}, {"max_queue", b.MaxQueue}} {
		if !(f.v > 0) || math.IsInf(f.v, 1) { // NaN and +Inf make every score NaN
			add(f.key, "must be a positive finite number, got %v", f.v)
		}
	}
	if !(b.MaxKV > 0 && b.MaxKV <= 1) {
		add("max_kv", "must be above 0 and at most 1, got %v", b.MaxKV)
	}
	if b.PrefixBlockBytes < 16 {
		add("prefix_block_bytes", "must be at least 16, got %d", b.PrefixBlockBytes)
	}
	if b.AffinityEntries < 1 || b.AffinityEntries > 1<<24 {
		add("affinity_entries", "must be between 1 and 16777216, got %d", b.AffinityEntries)
	}
	if b.QueueTimeout < 0 {
		add("queue_timeout", "must not be negative (0 turns the gateway queue off), got %s", b.QueueTimeout)
	}
	if b.QueueLength < 1 || b.QueueLength > 1<<20 {
		add("queue_length", "must be between 1 and 1048576, got %d", b.QueueLength)
	}
	return errs
}
