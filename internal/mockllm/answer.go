package mockllm

// The simulated model's output: a pure function of (model id, prompt), one
// word per token, so that tests can predict every answer.

// vocabulary holds the words the simulated model says. Every word is plain
// lower-case ASCII, so it never needs JSON escaping; TestVocabularyIsPlain
// keeps it that way.
var vocabulary = [64]string{
	"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
	"blue", "green", "cutover", "rollout", "gateway", "replica", "token", "model",
	"stream", "latency", "request", "answer", "cloud", "river", "stone", "light",
	"paper", "signal", "window", "garden", "silver", "orange", "purple", "yellow",
	"alpha", "beta", "gamma", "delta", "echo", "harbor", "island", "jungle",
	"kernel", "ladder", "meadow", "needle", "ocean", "pillow", "quiet", "rocket",
	"summer", "tunnel", "umbrella", "valley", "winter", "xylophone", "yonder", "zephyr",
	"apple", "bridge", "candle", "dragon", "engine", "forest", "guitar", "honey",
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
	golden64    = 0x9e3779b97f4a7c15
)

// fnvString folds s into the FNV-1a hash h.
func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// fnvByte folds c into the FNV-1a hash h.
func fnvByte(h uint64, c byte) uint64 {
	h ^= uint64(c)
	return h * fnvPrime64
}

// mix64 is the SplitMix64 finaliser: a cheap, well-spread bijection.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// modelHash starts the answer hash for a model; the prompt is folded in after it.
func modelHash(model string) uint64 {
	return fnvByte(fnvString(fnvOffset64, model), 0)
}

// word returns the i-th word (token) of the answer with the given seed.
func word(seed uint64, i int) string {
	return vocabulary[mix64(seed+uint64(i+1)*golden64)%uint64(len(vocabulary))]
}

// appendToken appends the i-th token's text: the word, preceded by a space
// for every token but the first, so that the tokens concatenate to the answer.
func appendToken(dst []byte, seed uint64, i int) []byte {
	if i > 0 {
		dst = append(dst, ' ')
	}
	return append(dst, word(seed, i)...)
}

// appendAnswer appends the first n tokens of the answer with the given seed.
func appendAnswer(dst []byte, seed uint64, n int) []byte {
	for i := range n {
		dst = appendToken(dst, seed, i)
	}
	return dst
}

// Answer returns the text the simulator generates for model and prompt when
// it produces tokens tokens (one word each, separated by single spaces); it is
// "" when tokens <= 0. The answer depends only on its arguments, so different
// models answer the same prompt differently and one model always answers a
// prompt the same way, streamed or not. A shorter answer is a prefix of a
// longer one.
//
// The prompt is the request's "prompt" for /v1/completions. For
// /v1/chat/completions it is the contents of all messages, in order, joined by
// "\n"; roles are ignored, and a content given as an array of parts contributes
// its "text" parts concatenated without a separator.
//
// The number of tokens the server generates is Config.Tokens, lowered by the
// request's max_tokens (max_completion_tokens for chat) and by what is left of
// Config.MaxModelLen after PromptTokens(prompt).
func Answer(model, prompt string, tokens int) string {
	if tokens <= 0 {
		return ""
	}
	seed := mix64(fnvString(modelHash(model), prompt))
	return string(appendAnswer(make([]byte, 0, tokens*8), seed, tokens))
}

// PromptTokens returns the number of prompt tokens the simulator reports in
// usage.prompt_tokens for a prompt (see Answer for how a chat's prompt is
// formed): the number of whitespace-separated words, and at least 1.
func PromptTokens(prompt string) int {
	return max(1, countWords(prompt))
}

// countWords counts runs of non-space bytes (ASCII whitespace separates).
func countWords(s string) int {
	n := 0
	inWord := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			inWord = false
		default:
			if !inWord {
				n++
				inWord = true
			}
		}
	}
	return n
}
