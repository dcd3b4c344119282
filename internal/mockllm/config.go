package mockllm

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Default values applied by New to zero Config fields.
const (
	// DefaultTokens is the answer length when Config.Tokens is 0.
	DefaultTokens = 16
	// DefaultMaxModelLen is the context length when Config.MaxModelLen is 0.
	DefaultMaxModelLen = 8192
	// nominalSeqs stands in for vLLM's max_num_seqs when MaxConcurrent is 0,
	// so that vllm:kv_cache_usage_perc still moves with the load.
	nominalSeqs = 256
)

// Config is what a simulated vLLM replica serves and how it misbehaves.
// The zero value of every field except Model is valid. Durations and counts
// must not be negative; rates must lie in [0, 1].
type Config struct {
	// Model is the served model id; required. Requests naming another model
	// (or none) get vLLM's 404.
	Model string
	// TTFT is the delay before the first token; 0 means none.
	TTFT time.Duration
	// ITL is the delay between two tokens; 0 means none. A non-streamed
	// answer waits TTFT + ITL*(tokens-1) before it is sent.
	ITL time.Duration
	// Tokens is the answer length when max_tokens does not cap it;
	// 0 means DefaultTokens.
	Tokens int
	// MaxConcurrent caps the sequences generated at once; requests beyond it
	// wait (vllm:num_requests_waiting) until a slot frees or their client
	// leaves. 0 means unlimited.
	MaxConcurrent int
	// KVBlocks is the replica's KV-cache budget in blocks of BlockSize
	// tokens (simulated tokens are words). With it, running sequences hold
	// blocks (vllm:kv_cache_usage_perc), and the full blocks of finished
	// prompts stay in a prefix cache, evicted least recently used first,
	// so that a prompt sharing a cached prefix skips its prefill
	// (vllm:prefix_cache_hits_total). 0 means no prefix cache.
	KVBlocks int
	// BlockSize is the tokens per KV block; 0 means DefaultBlockSize.
	BlockSize int
	// PrefillPerToken is added to TTFT for every prompt token not served
	// from the prefix cache; 0 means prefill costs nothing.
	PrefillPerToken time.Duration
	// ITLPerSeq is added to ITL for every other sequence running at once,
	// so that decoding slows down as the batch grows; 0 means no slowdown.
	ITLPerSeq time.Duration
	// MaxBatchedTokens, vLLM's --max-num-batched-tokens, makes the
	// replica's compute one resource spent in steps of at most this many
	// prefill tokens: prefills run one after the other (a prompt's first
	// token waits for the prefills started before it), and a decoding
	// sequence's next token waits for the end of the prefill step in
	// progress (a whole prefill for a prompt under the budget). 0 means
	// each sequence's prefill runs on its own, delaying no one else.
	MaxBatchedTokens int
	// ErrorRate is the fraction of completion requests answered with an HTTP
	// 500; 0 means none, 1 means all.
	ErrorRate float64
	// StreamErrorRate is the fraction of streamed completion requests that
	// send a few chunks and then an in-stream error event inside their
	// HTTP 200, as vLLM does when generation fails mid-stream.
	StreamErrorRate float64
	// ExtraLatency is added to every request under /v1/; 0 means none.
	ExtraLatency time.Duration
	// StartupPeriod is how long after New the server answers 503 on every
	// endpoint (including /health, but not /mock/faults), like a vLLM replica
	// still loading its weights; 0 means ready at once.
	StartupPeriod time.Duration
	// FailHealth makes /health answer 503 from the start.
	FailHealth bool
	// Seed seeds the fault-injection draws, so that a test sending requests
	// one at a time sees the same faults on every run.
	Seed int64
	// MaxModelLen is the context length reported in /v1/models and enforced
	// on prompt_tokens + max_tokens; 0 means DefaultMaxModelLen.
	MaxModelLen int
	// AnswerAs, when set, makes the answers those of that model id instead
	// of Model: a new version that serves a new id but the same weights
	// (a new serving stack, say) answers exactly like the old one.
	AnswerAs string
	// LoRAModules are the names of LoRA adapters served beside Model, as
	// vLLM's --lora-modules name=path: /v1/models lists each (parent
	// Model) and requests may name one; answers then carry that name.
	LoRAModules []string
	// APIKey, when set, is the key every request under /v1/ must carry as
	// Authorization: Bearer APIKey, like vLLM's --api-key; others get 401
	// {"error":"Unauthorized"}. /health, /metrics and /mock/faults stay
	// open, as vLLM leaves its paths outside /v1 open. Empty means no key.
	APIKey string
	// Sleep enables vLLM's sleep mode and its routes; the zero value leaves
	// them off (404), as vLLM without VLLM_SERVER_DEV_MODE=1.
	Sleep SleepConfig
}

// FieldError reports an invalid Config field. Field is the Go field name
// (e.g. "TTFT"), so that callers can map it to a flag or a config key.
type FieldError struct {
	Field string // Go field name, e.g. "TTFT"
	Value any    // the rejected value
	Err   error  // what is wrong with it, e.g. "must not be negative"
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("mockllm: Config.%s is %v: %v", e.Field, e.Value, e.Err)
}

// Unwrap returns the reason.
func (e *FieldError) Unwrap() error { return e.Err }

// withDefaults returns cfg with the documented defaults applied.
func (cfg Config) withDefaults() Config {
	if cfg.Tokens == 0 {
		cfg.Tokens = DefaultTokens
	}
	if cfg.MaxModelLen == 0 {
		cfg.MaxModelLen = DefaultMaxModelLen
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	return cfg
}

// validate checks cfg (defaults already applied) and names the first bad field.
func (cfg Config) validate() error {
	if cfg.Model == "" {
		return &FieldError{Field: "Model", Value: `""`, Err: errors.New("a served model id is required")}
	}
	for _, name := range cfg.LoRAModules {
		if name == "" || name == cfg.Model {
			return &FieldError{Field: "LoRAModules", Value: fmt.Sprintf("%q", cfg.LoRAModules),
				Err: errors.New("each adapter needs a name of its own, not empty and not the model's")}
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"TTFT", cfg.TTFT},
		{"ITL", cfg.ITL},
		{"ExtraLatency", cfg.ExtraLatency},
		{"StartupPeriod", cfg.StartupPeriod},
		{"PrefillPerToken", cfg.PrefillPerToken},
		{"ITLPerSeq", cfg.ITLPerSeq},
	} {
		if d.v < 0 {
			return &FieldError{Field: d.field, Value: d.v, Err: errors.New("must not be negative")}
		}
	}
	for _, n := range []struct {
		field string
		v     int
	}{
		{"Tokens", cfg.Tokens},
		{"MaxConcurrent", cfg.MaxConcurrent},
		{"MaxModelLen", cfg.MaxModelLen},
		{"KVBlocks", cfg.KVBlocks},
		{"BlockSize", cfg.BlockSize},
		{"MaxBatchedTokens", cfg.MaxBatchedTokens},
	} {
		if n.v < 0 {
			return &FieldError{Field: n.field, Value: n.v, Err: errors.New("must not be negative")}
		}
	}
	if cfg.Tokens >= cfg.MaxModelLen {
		return &FieldError{Field: "Tokens", Value: cfg.Tokens,
			Err: fmt.Errorf("must be below MaxModelLen (%d)", cfg.MaxModelLen)}
	}
	for _, r := range []struct {
		field string
		v     float64
	}{
		{"ErrorRate", cfg.ErrorRate},
		{"StreamErrorRate", cfg.StreamErrorRate},
	} {
		if !validRate(r.v) {
			return &FieldError{Field: r.field, Value: r.v, Err: errors.New("must be between 0 and 1")}
		}
	}
	return nil
}

// validRate reports whether r is a fraction in [0, 1] (NaN is not).
func validRate(r float64) bool { return r >= 0 && r <= 1 }

// clampRate maps r into [0, 1]; NaN becomes 0.
func clampRate(r float64) float64 {
	if math.IsNaN(r) || r < 0 {
		return 0
	}
	return min(r, 1)
}
