package mockllm

// The completion endpoints: request parsing, planning, and the streamed and
// non-streamed answers.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cutover-dev/cutover/internal/jsonstr"
)

// endpoint tells the two completion APIs apart.
type endpoint uint8

const (
	chatEndpoint endpoint = iota // /v1/chat/completions
	textEndpoint                 // /v1/completions
)

// Finish reasons.
const (
	finishStop   = "stop"   // the answer ended by itself (Config.Tokens reached)
	finishLength = "length" // max_tokens or the context length cut the answer
)

// maxRequestBytes bounds a completion request body.
const maxRequestBytes = 32 << 20

// completionRequest holds the fields of a completion request the simulator
// reads; the others (temperature, ...) are accepted and ignored, and so is n:
// there is always exactly one choice.
type completionRequest struct {
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	Prompt              promptText     `json:"prompt"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	N                   *int           `json:"n"`
}

// streamOptions is the request's stream_options object.
type streamOptions struct {
	IncludeUsage bool
	// set reports a non-empty object: vLLM (Python) takes an empty one,
	// like null, as no options.
	set bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (o *streamOptions) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	o.set = len(m) > 0
	if v, ok := m["include_usage"]; ok && string(v) != "null" {
		return json.Unmarshal(v, &o.IncludeUsage)
	}
	return nil
}

type chatMessage struct {
	Content messageContent `json:"content"`
}

// messageContent is a chat message's content: a string, null, or an array of
// content parts, of which the "text" parts are kept, concatenated.
type messageContent string

// UnmarshalJSON implements json.Unmarshaler.
func (c *messageContent) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == '"':
		s, err := unquote(b)
		if err != nil {
			return err
		}
		*c = messageContent(s)
	case len(b) > 0 && b[0] == '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type == "text" {
				sb.WriteString(p.Text)
			}
		}
		*c = messageContent(sb.String())
	case string(b) == "null":
		*c = ""
	default:
		return errors.New("message content must be a string, an array of content parts or null")
	}
	return nil
}

// unquote decodes the JSON string literal b. json.Unmarshal has validated the
// whole document before calling an UnmarshalJSON method, so a literal without
// escapes and with valid UTF-8 decodes to its bytes between the quotes; that
// common case skips a second pass of encoding/json.
func unquote(b []byte) (string, error) {
	if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
		return string(b[1 : len(b)-1]), nil
	}
	var s string
	err := json.Unmarshal(b, &s)
	return s, err
}

// promptText is a /v1/completions prompt: a string or an array holding one
// string. Batched and token-id prompts are not simulated.
type promptText struct {
	text string
	set  bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *promptText) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var one []string
	switch {
	case b[0] == '"':
		text, err := unquote(b)
		if err != nil {
			return err
		}
		p.text = text
	case json.Unmarshal(b, &one) == nil && len(one) == 1:
		p.text = one[0]
	default:
		return errors.New("prompt must be a string or an array of one string (the simulator does not batch)")
	}
	p.set = true
	return nil
}

// job is a validated completion request, ready to generate.
type job struct {
	kind         endpoint
	stream       bool
	includeUsage bool
	created      int64  // unix seconds
	seed         uint64 // answer seed: hash of model and prompt
	promptTokens int
	tokens       int    // tokens to generate, >= 1
	finish       string // finishStop or finishLength
	modelJSON    []byte // the model answering, when a LoRA adapter; nil: the server's

	blocks  []uint64      // the prompt's full-block hashes, with a prefix cache
	hasher  *blockHasher  // what made blocks, to go on with the answer
	prefill time.Duration // time to first token once running
}

// result is how a generation ended.
type result uint8

const (
	succeeded result = iota
	failed           // fault injected
	canceled         // the client left
)

// readRequest reads and decodes a completion request body.
func readRequest(w http.ResponseWriter, r *http.Request, req *completionRequest) error {
	b := getBuf()
	defer putBuf(b)
	body, err := readAll(http.MaxBytesReader(w, r.Body, maxRequestBytes), *b)
	*b = body
	if err != nil {
		return fmt.Errorf("reading request body: %w", err)
	}
	if err := json.Unmarshal(body, req); err != nil {
		return fmt.Errorf("JSON decode error: %w", err)
	}
	return nil
}

// notJSONMessage is vLLM's answer to a request body of another media
// type (it checks the header before anything else).
const notJSONMessage = "Unsupported Media Type: Only 'application/json' is allowed"

// isJSON reports whether a Content-Type header names application/json.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// readAll reads r to EOF, appending to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// badRequest builds vLLM's 400.
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: typeBadRequest, message: fmt.Sprintf(format, args...), param: param}
}

// plan validates req the way vLLM does and works out what to generate.
func (s *Server) plan(req *completionRequest, kind endpoint, arrival time.Time) (job, *apiError) {
	// vLLM's request model checks this while parsing, before the model.
	if req.StreamOptions != nil && req.StreamOptions.set && !req.Stream {
		return job{}, badRequest("stream_options", "Stream options can only be defined when `stream=True`.")
	}
	var modelJSON []byte // a LoRA adapter's name; nil: Model
	if req.Model != s.cfg.Model {
		if !slices.Contains(s.cfg.LoRAModules, req.Model) {
			return job{}, &apiError{status: http.StatusNotFound, typ: typeNotFound, param: "model",
				message: "The model `" + req.Model + "` does not exist."}
		}
		modelJSON = jsonstr.Append(nil, req.Model)
	}
	if req.N != nil {
		if *req.N < 1 {
			return job{}, badRequest("n", "n must be at least 1, got %d.", *req.N)
		}
		if *req.N > 1 {
			// Refused, not answered with one choice: a test that relies
			// on n should fail here, not pass against the wrong answer.
			return job{}, badRequest("n", "the simulator answers one choice; n=%d is not supported", *req.N)
		}
	}
	j := job{kind: kind, stream: req.Stream, created: arrival.Unix(), tokens: s.cfg.Tokens, finish: finishStop, modelJSON: modelJSON}
	if req.StreamOptions != nil && req.Stream {
		j.includeUsage = req.StreamOptions.IncludeUsage
	}
	h, words, limit := s.modelHash, 0, req.MaxTokens
	var bh *blockHasher
	if s.kv != nil {
		bh = &blockHasher{blockSize: s.cfg.BlockSize, h: s.modelHash}
	}
	switch kind {
	case chatEndpoint:
		if len(req.Messages) == 0 {
			return job{}, badRequest("messages", "messages must not be empty")
		}
		for i, m := range req.Messages {
			if i > 0 {
				h = fnvByte(h, '\n')
			}
			h = fnvString(h, string(m.Content))
			words += countWords(string(m.Content))
			if bh != nil {
				bh.add(string(m.Content))
			}
		}
		if req.MaxCompletionTokens != nil && *req.MaxCompletionTokens != 0 {
			limit = req.MaxCompletionTokens // vLLM: max_completion_tokens or max_tokens
		}
	case textEndpoint:
		if !req.Prompt.set {
			return job{}, badRequest("prompt", "prompt is required")
		}
		h = fnvString(h, req.Prompt.text)
		words = countWords(req.Prompt.text)
		if bh != nil {
			bh.add(req.Prompt.text)
		}
	}
	if bh != nil {
		j.blocks, j.hasher = bh.hashes, bh
	}
	j.seed, j.promptTokens = mix64(h), max(1, words)
	if s.garbageWeights() {
		j.seed = mix64(j.seed ^ garbageSalt) // level-2 wake without reload_weights: wrong text
	}

	maxLen := s.cfg.MaxModelLen
	if j.promptTokens >= maxLen {
		return job{}, badRequest("", "This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.",
			maxLen, j.promptTokens)
	}
	if limit != nil {
		if *limit < 1 {
			return job{}, badRequest("max_tokens", "max_tokens must be at least 1, got %d.", *limit)
		}
		if j.promptTokens+*limit > maxLen {
			return job{}, badRequest("", "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				maxLen, j.promptTokens+*limit, j.promptTokens, *limit)
		}
		if *limit < j.tokens {
			j.tokens, j.finish = *limit, finishLength
		}
	}
	if room := maxLen - j.promptTokens; j.tokens > room {
		j.tokens, j.finish = room, finishLength
	}
	return j, nil
}

// serveCompletion handles POST /v1/chat/completions and /v1/completions.
func (s *Server) serveCompletion(w http.ResponseWriter, r *http.Request, kind endpoint) {
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, http.MethodPost)
		return
	}
	arrival := time.Now()
	s.requests.Add(1)
	ctx := r.Context()
	var req completionRequest
	readErr := readRequest(w, r, &req)
	notJSON := !isJSON(r.Header.Get("Content-Type"))
	// Delay only now: net/http notices a client leaving (and cancels ctx)
	// only once the request body has been read.
	if !s.delay(ctx) {
		s.canceled.Add(1)
		return
	}
	if notJSON {
		s.rejected.Add(1)
		writeError(w, badRequest("", notJSONMessage))
		return
	}
	if readErr != nil {
		s.rejected.Add(1)
		writeError(w, badRequest("", "%v", readErr))
		return
	}
	j, aerr := s.plan(&req, kind, arrival)
	if aerr != nil {
		s.rejected.Add(1)
		writeError(w, aerr)
		return
	}
	if s.draw(s.faults.errRate()) {
		s.failed.Add(1)
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: typeInternal,
			message: "Simulated engine failure (mockllm error rate)."})
		return
	}
	failAt := -1 // token index at which a stream breaks; -1 means never
	if j.stream && s.draw(s.faults.streamErrRate()) {
		failAt = j.tokens / 2
	}
	queued := time.Now()
	if !s.acquire(ctx) {
		s.canceled.Add(1)
		return
	}
	running := time.Now()
	s.metrics.queueTime.Observe(running.Sub(queued).Seconds())
	defer func() {
		s.release()
		s.metrics.runTime.Observe(time.Since(running).Seconds())
	}()
	s.metrics.promptTokens.Add(float64(j.promptTokens))
	cached := 0
	if s.kv != nil {
		var blocks int
		cached, blocks = s.kv.admit(j.blocks, j.promptTokens, j.promptTokens+j.tokens)
		defer s.kv.release(blocks)
	}
	j.prefill = s.prefillWait(time.Now(), j.promptTokens-cached)

	var produced int
	var res result
	if j.stream {
		produced, res = s.stream(ctx, w, &j, failAt, arrival)
	} else {
		produced, res = s.respond(ctx, w, &j, arrival)
	}
	s.metrics.genTokens.Add(float64(produced))
	switch res {
	case succeeded:
		if s.kv != nil && j.kind == chatEndpoint {
			s.kv.keep(s.answerBlocks(&j, produced))
		}
		s.succeeded.Add(1)
		s.metrics.success[j.finish].Inc()
		s.metrics.e2e.Observe(time.Since(arrival).Seconds())
	case failed:
		s.failed.Add(1)
	case canceled:
		s.canceled.Add(1)
		s.metrics.success["abort"].Inc()
	}
}

// respond generates a non-streamed answer: it waits TTFT + ITL*(tokens-1),
// then writes the whole body at once.
func (s *Server) respond(ctx context.Context, w http.ResponseWriter, j *job, arrival time.Time) (int, result) {
	var p pacer
	defer p.stop()
	if !p.wait(ctx, j.prefill) {
		return 0, canceled
	}
	first := time.Now()
	s.metrics.ttft.Observe(first.Sub(arrival).Seconds())
	if j.tokens > 1 {
		if !p.wait(ctx, s.decodeWait(first, j.tokens-1)) {
			return 1, canceled
		}
		gap := time.Since(first).Seconds() / float64(j.tokens-1)
		for range j.tokens - 1 {
			s.metrics.itl.Observe(gap)
		}
	}

	b := getBuf()
	buf := s.appendHead(*b, j)
	if j.kind == chatEndpoint {
		buf = append(buf, `,"choices":[{"index":0,"message":{"role":"assistant","content":"`...)
		buf = appendAnswer(buf, j.seed, j.tokens)
		buf = append(buf, `","refusal":null,"tool_calls":[],"reasoning_content":null},"logprobs":null,"finish_reason":"`...)
		buf = append(buf, j.finish...)
		buf = append(buf, `","stop_reason":null}]`...)
	} else {
		buf = append(buf, `,"choices":[{"index":0,"text":"`...)
		buf = appendAnswer(buf, j.seed, j.tokens)
		buf = append(buf, `","logprobs":null,"finish_reason":"`...)
		buf = append(buf, j.finish...)
		buf = append(buf, `","stop_reason":null,"prompt_logprobs":null}]`...)
	}
	buf = append(buf, `,"service_tier":null,"system_fingerprint":null,"usage":`...)
	buf = appendUsage(buf, j.promptTokens, j.tokens)
	if j.kind == chatEndpoint {
		buf = append(buf, `,"prompt_logprobs":null`...)
	}
	buf = append(buf, `,"kv_transfer_params":null}`...)
	writeJSON(w, http.StatusOK, buf)
	*b = buf
	putBuf(b)
	return j.tokens, succeeded
}

// appendHead appends the fields every response and chunk starts with:
// {"id":...,"object":...,"created":...,"model":... (object left open).
func (s *Server) appendHead(b []byte, j *job) []byte {
	object := `","object":"text_completion","created":`
	if j.kind == chatEndpoint {
		b = append(b, `{"id":"chatcmpl-`...)
		object = `","object":"chat.completion","created":`
		if j.stream {
			object = `","object":"chat.completion.chunk","created":`
		}
	} else {
		b = append(b, `{"id":"cmpl-`...)
	}
	b = appendHex16(b, s.idPrefix)
	b = appendHex16(b, s.ids.Add(1))
	b = append(b, object...)
	b = strconv.AppendInt(b, j.created, 10)
	b = append(b, `,"model":`...)
	if j.modelJSON != nil {
		return append(b, j.modelJSON...)
	}
	return append(b, s.modelJSON...)
}

// Fixed pieces of stream chunks.
const (
	chatChoiceOpen = `,"choices":[{"index":0,"delta":{`
	chatRoleDelta  = `"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	chatTokenOpen  = `"content":"`
	chatTokenMid   = `"},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	chatTokenLast  = `"},"logprobs":null,"finish_reason":"`
	textChoiceOpen = `,"choices":[{"index":0,"text":"`
	textTokenMid   = `","logprobs":null,"finish_reason":null,"stop_reason":null}]}` + "\n\n"
	textTokenLast  = `","logprobs":null,"finish_reason":"`
	lastTail       = `","stop_reason":null}]}` + "\n\n"
	sseDone        = "data: [DONE]\n\n"
)

// stream generates a streamed answer as vLLM's server-sent events: for chat a
// role chunk, then one chunk per token (the last carrying finish_reason), an
// optional usage chunk, and [DONE]. With failAt >= 0 the stream sends an
// error event and [DONE] instead of token failAt.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, j *job, failAt int, arrival time.Time) (int, result) {
	w.Header()["Content-Type"] = sseContentType
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(b []byte) bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		err := rc.Flush()
		return err == nil || errors.Is(err, http.ErrNotSupported)
	}
	if !send(nil) { // headers out before the first token
		return 0, canceled
	}

	b := getBuf()
	buf := append(*b, "data: "...)
	defer func() { *b = buf; putBuf(b) }()
	buf = s.appendHead(buf, j)
	headLen := len(buf)
	chat := j.kind == chatEndpoint
	if chat {
		buf = append(buf, chatChoiceOpen...)
	} else {
		buf = append(buf, textChoiceOpen...)
	}
	prefixLen := len(buf)

	var p pacer
	defer p.stop()
	if !p.wait(ctx, j.prefill) {
		return 0, canceled
	}
	if chat && !send(append(buf, chatRoleDelta...)) {
		return 0, canceled
	}
	last := time.Now()
	s.metrics.ttft.Observe(last.Sub(arrival).Seconds())
	for i := range j.tokens {
		if i > 0 {
			if !p.wait(ctx, s.decodeWait(time.Now(), 1)) {
				return i, canceled
			}
			now := time.Now()
			s.metrics.itl.Observe(now.Sub(last).Seconds())
			last = now
		}
		if i == failAt {
			buf = append(buf[:0], "data: "...)
			buf = appendError(buf, &apiError{status: http.StatusInternalServerError, typ: typeInternal,
				message: "Simulated engine failure mid-stream (mockllm stream error rate)."})
			buf = append(buf, "\n\n"+sseDone...)
			send(buf)
			return i, failed
		}
		buf = buf[:prefixLen]
		if chat {
			buf = append(buf, chatTokenOpen...)
		}
		buf = appendToken(buf, j.seed, i)
		switch {
		case i < j.tokens-1 && chat:
			buf = append(buf, chatTokenMid...)
		case i < j.tokens-1:
			buf = append(buf, textTokenMid...)
		default:
			if chat {
				buf = append(buf, chatTokenLast...)
			} else {
				buf = append(buf, textTokenLast...)
			}
			buf = append(buf, j.finish...)
			buf = append(buf, lastTail...)
		}
		if !send(buf) {
			return i, canceled
		}
	}
	buf = buf[:0]
	if j.includeUsage { // the usage chunk reuses the head: same id, created, model
		buf = append(buf[:headLen], `,"choices":[],"usage":`...)
		buf = appendUsage(buf, j.promptTokens, j.tokens)
		buf = append(buf, "}\n\n"...)
	}
	if !send(append(buf, sseDone...)) {
		return j.tokens, canceled
	}
	return j.tokens, succeeded
}
