package proxy

import (
	"bytes"
	"strconv"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// Observation is what the data plane saw of one client request. It is
// filled as the request goes and handed to the Observer once, at the end.
type Observation struct {
	// Pool is the pool the request was routed to.
	Pool string
	// Replica is the replica that answered (the last one tried), nil when
	// none was picked.
	Replica *pool.Replica
	Method  string
	Path    string
	// Status is the HTTP status sent to the client; 499 when the client
	// went away first (never sent).
	Status int
	// Error is the gateway's error code when it failed the request or the
	// stream broke: no_healthy_replica, upstream_unreachable,
	// upstream_timeout, upstream_idle, upstream_broken, client_closed...
	Error string
	// Retried reports a second attempt on another replica.
	Retried bool
	// Stream reports a streamed (SSE or unknown-length) response.
	Stream bool
	// Start is when the request arrived.
	Start time.Time
	// TTFB is the time to the replica's response headers.
	TTFB time.Duration
	// TTFT is the time to the first body bytes: for a stream, the first
	// token's chunk.
	TTFT time.Duration
	// Duration is the time to the end of the response.
	Duration time.Duration
	// Bytes is the response body size relayed.
	Bytes int64
	// Tokens is the number of output tokens: usage.completion_tokens when
	// the response carried it, else (streams) the data events counted.
	Tokens int
	// TokensFromUsage reports that Tokens came from a usage object.
	TokensFromUsage bool
	// StreamError reports an error event inside a 200 stream
	// (data: {"error": ...}), as vLLM sends when generation fails.
	StreamError bool
	// Key is the id of the client's API key (auth.api_keys_file), "" when
	// client auth is off. Never the key itself.
	Key string

	trace *reqTrace // the request's span, nil when tracing is off
}

// Failed reports whether the request counts as an error for health
// signals: 5xx, a transport failure, or an error inside the stream. A
// client that went away is not the server's failure, unless the stream
// had already carried an error (a client may well leave because of it).
func (o *Observation) Failed() bool {
	if o.StreamError {
		return true
	}
	if o.Error == "client_closed" {
		return false
	}
	return o.Status >= 500 || o.Status == 0 || o.StreamError || o.Error != ""
}

// Observer receives every request's observation. Implementations must be
// fast and must not keep o: it is reused.
type Observer interface {
	Observe(o *Observation)
}

// bodyScanner watches relayed response bytes for what the observation
// needs, without buffering the body: SSE data events, an error event, and
// the last usage.completion_tokens. Patterns split across two reads are
// found through a small carry of the previous read's tail.
type bodyScanner struct {
	events      int
	roleFirst   bool // the first event only announced the role
	streamError bool
	done        bool // data: [DONE] seen
	usage       int  // -1 until seen
	carry       [48]byte
	ncarry      int
	firstDone   bool   // roleFirst is decided
	first       []byte // the start of the body while its first event's line is incomplete
}

// maxFirst bounds how much of the body is kept to decide roleFirst.
const maxFirst = 4 << 10

var (
	patData   = []byte("data: ")
	patDone   = []byte("data: [DONE]")
	patError  = []byte(`data: {"error"`)
	patUsage  = []byte(`"completion_tokens":`)
	patRole   = []byte(`"role":"assistant"`)
	maxCarry  = 48
	carryScan = 64
)

func newBodyScanner() bodyScanner { return bodyScanner{usage: -1} }

// scan looks at the next piece of the body.
func (s *bodyScanner) scan(b []byte, stream bool) {
	if stream {
		if !s.firstDone {
			s.findFirst(b)
		}
		// One pass over patData's space (rarer in compact JSON than
		// its 'd'); the [DONE] and error patterns begin with patData.
		done, k := false, 0
		for from := len(patData) - 1; from < len(b); {
			i := bytes.IndexByte(b[from:], ' ')
			if i < 0 {
				break
			}
			i += from
			from = i + 1
			st := i - (len(patData) - 1)
			if !bytes.Equal(b[st:i+1], patData) {
				continue
			}
			s.events++
			switch rest := b[st:]; {
			case bytes.HasPrefix(rest, patDone):
				done = true
			case bytes.HasPrefix(rest, patError):
				k++
			}
		}
		if done {
			s.events--
			s.done = true
		}
		if k > 0 {
			s.streamError = true
			s.events -= k // an error event is not a token
		}
	}
	var usageHere int
	if stream {
		usageHere = lastUsage(b)
	} else {
		usageHere = lastUsageBack(b)
	}
	if s.ncarry > 0 && (stream || usageHere < 0) {
		// Patterns straddling the previous read and this one, each
		// counted as a whole body would count it.
		var joined [2 * 64]byte
		j := append(joined[:0], s.carry[:s.ncarry]...)
		j = append(j, b[:min(len(b), carryScan)]...)
		if usageHere < 0 {
			if i := lastUsage(j); i >= 0 {
				if v, ok := parseInt(j[i+len(patUsage):]); ok {
					s.usage = v
				}
			}
		}
		if stream {
			if straddles(j, s.ncarry, patData) {
				s.events++
			}
			if straddles(j, s.ncarry, patDone) {
				s.events--
				s.done = true
			}
			if straddles(j, s.ncarry, patError) {
				s.streamError = true
				s.events--
			}
		}
	}
	if usageHere >= 0 {
		if v, ok := parseInt(b[usageHere+len(patUsage):]); ok {
			s.usage = v
		}
	}
	s.ncarry = copy(s.carry[:], b[max(0, len(b)-maxCarry):])
}

// findFirst decides whether the first event only announced the role,
// once that event's line is whole (it may come in pieces).
func (s *bodyScanner) findFirst(b []byte) {
	seen := b
	if s.first != nil {
		s.first = append(s.first, b[:min(len(b), maxFirst-len(s.first))]...)
		seen = s.first
	}
	i := bytes.Index(seen, patData)
	if i >= 0 {
		line := seen[i:]
		if end := bytes.IndexByte(line, '\n'); end > 0 {
			s.roleFirst, s.firstDone, s.first = bytes.Contains(line[:end], patRole), true, nil
			return
		}
	}
	if len(seen) >= maxFirst { // no such line near the start: not vLLM's shape
		s.firstDone, s.first = true, nil
		return
	}
	if s.first == nil {
		s.first = append(make([]byte, 0, 512), b...)
	}
}

// tokens returns the output token count and whether usage gave it.
func (s *bodyScanner) tokens() (int, bool) {
	if s.usage >= 0 {
		return s.usage, true
	}
	n := s.events
	if s.roleFirst {
		n--
	}
	return max(n, 0), false
}

// lastUsage is bytes.LastIndex(b, patUsage), found from the pattern's
// '_', a byte rare in an answer's JSON: much cheaper, on every relayed
// read, than searching from its leading quote (the commonest byte there)
// or bytes.LastIndex's backward hashing.
func lastUsage(b []byte) int {
	const k = len(`"completion`) // patUsage[k] == '_'
	last := -1
	for from := k; from < len(b); {
		i := bytes.IndexByte(b[from:], '_')
		if i < 0 {
			break
		}
		i += from
		if s := i - k; len(b)-s >= len(patUsage) && bytes.Equal(b[s:s+len(patUsage)], patUsage) {
			last = s
		}
		from = i + 1
	}
	return last
}

// lastUsageBack is lastUsage searching from the end, for a whole answer:
// its usage is near the end. A window the size of patUsage moves left
// (Horspool's search, mirrored) by usageSkip of the byte it starts at:
// an answer's tail is passed in steps of about ten bytes, where looking
// at each '_' (vLLM's tail has many: prompt_logprobs,
// kv_transfer_params, prompt_tokens_details) cost a word-by-word search
// and a comparison each.
func lastUsageBack(b []byte) int {
	m := len(patUsage)
	for s := len(b) - m; s >= 0; s -= int(usageSkip[b[s]]) {
		if b[s+m-1] == ':' && string(b[s:s+m]) == string(patUsage) {
			return s
		}
	}
	return -1
}

// usageSkip tells lastUsageBack how far a window that is no match may
// move left when its first byte is c: to the nearest c in patUsage after
// its first byte (aligned there, the window may match), else past the
// whole pattern.
var usageSkip = func() (t [256]uint8) {
	for c := range t {
		t[c] = uint8(len(patUsage))
	}
	for k := len(patUsage) - 1; k >= 1; k-- {
		t[patUsage[k]] = uint8(k)
	}
	return t
}()

// straddles reports whether pat occurs in j starting before cut and ending
// after it: a match split between the carried tail and the new read.
func straddles(j []byte, cut int, pat []byte) bool {
	// Only the starts before cut whose match would reach past it.
	for from := max(0, cut-len(pat)+1); from < cut; from++ {
		if j[from] == pat[0] && bytes.HasPrefix(j[from:], pat) {
			return true
		}
	}
	return false
}

func parseInt(b []byte) (int, bool) {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == i || j == len(b) { // no digits, or the number may go on in the next read
		return 0, false
	}
	v, err := strconv.Atoi(string(b[i:j]))
	return v, err == nil
}

// AnswerScanner reads an answer piece by piece, as it arrives, the way the
// data plane observes a live one as it relays it, without keeping it.
type AnswerScanner struct {
	s      bodyScanner
	stream bool
}

// NewAnswerScanner returns a scanner for an SSE stream (stream) or a JSON
// answer.
func NewAnswerScanner(stream bool) *AnswerScanner {
	return &AnswerScanner{s: newBodyScanner(), stream: stream}
}

// Write scans the next piece of the answer; it never fails.
func (a *AnswerScanner) Write(p []byte) (int, error) {
	a.s.scan(p, a.stream)
	return len(p), nil
}

// Result returns the output tokens (from usage when the answer had it,
// else the stream's content events), whether the stream carried an error
// event, and whether it ended with data: [DONE].
func (a *AnswerScanner) Result() (tokens int, streamError, done bool) {
	tokens, _ = a.s.tokens()
	return tokens, a.s.streamError, a.stream && a.s.done
}
