package mockllm

// Hand-built JSON for the hot path: responses are appended to pooled byte
// slices instead of going through encoding/json's reflection.

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/cutover-dev/cutover/internal/jsonstr"
)

const hexDigits = "0123456789abcdef"

// Header values shared by all responses; never modified.
var (
	jsonContentType = []string{"application/json"}
	sseContentType  = []string{"text/event-stream; charset=utf-8"}
)

// bufPool recycles response and request buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// getBuf returns an empty pooled buffer; hand it back with putBuf.
func getBuf() *[]byte {
	b := bufPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// putBuf returns b to the pool unless it grew too large to keep.
func putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bufPool.Put(b)
	}
}

// appendHex16 appends v as 16 lower-case hex digits.
func appendHex16(dst []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(v>>uint(shift))&0xf])
	}
	return dst
}

// appendUsage appends vLLM's usage object.
func appendUsage(dst []byte, prompt, completion int) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt+completion), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(completion), 10)
	return append(dst, `,"prompt_tokens_details":null}`...)
}

// apiError is an error answered in vLLM's shape.
type apiError struct {
	status  int    // HTTP status, also the "code" field
	typ     string // e.g. "NotFoundError"
	message string
	param   string // "" is encoded as null
}

// Error types vLLM uses in its error responses.
const (
	typeBadRequest  = "BadRequestError"
	typeNotFound    = "NotFoundError"
	typeInternal    = "InternalServerError"
	typeUnavailable = "ServiceUnavailableError"
)

// appendError appends vLLM's error object:
// {"error":{"message":...,"type":...,"param":...,"code":N}}.
func appendError(dst []byte, e *apiError) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = jsonstr.Append(dst, e.message)
	dst = append(dst, `,"type":`...)
	dst = jsonstr.Append(dst, e.typ)
	dst = append(dst, `,"param":`...)
	if e.param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonstr.Append(dst, e.param)
	}
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(e.status), 10)
	return append(dst, "}}"...)
}

// writeJSON sends body with the given status as application/json.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body) // a write error means the client left; nothing to do
}

// writeError sends e in vLLM's error shape.
func writeError(w http.ResponseWriter, e *apiError) {
	b := getBuf()
	*b = appendError(*b, e)
	writeJSON(w, e.status, *b)
	putBuf(b)
}

// writeMethodNotAllowed answers 405 the way vLLM's HTTPException handler does.
func writeMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, &apiError{status: http.StatusMethodNotAllowed, typ: "Method Not Allowed", message: "Method Not Allowed"})
}
