package proxy

import (
	"io"
	"math/bits"
	"net/http"
	"sync"
	"sync/atomic"
)

// Request bodies are held whole in memory (a failed attempt goes to another
// replica, the model field is rewritten), so a declared length is a claim,
// not a size to allocate: a body grows as its bytes arrive, and every byte
// held counts against one gateway-wide budget (Options.MaxBufferedBytes).

// defaultMaxBufferedBytes is Options.MaxBufferedBytes's zero value.
const defaultMaxBufferedBytes = 512 << 20

// A declared length up to bodyChunk is allocated at once. A longer or
// unknown one grows as it arrives, in pooled chunks of firstChunk doubling
// up to bodyChunk: what a body holds is at most about twice what arrived,
// and a client that declares 32 MiB and sends a byte holds 4 KiB.
const (
	bodyChunk  = 64 << 10
	firstChunk = 4 << 10
)

// rewriteRoom is the room a connection's small body buffer (bufferBody's
// small) has past the body, in which the model-name rule rewrites it in
// place (see bodyModel.inPlace): a pool's model id up to this much longer
// than the name clients send.
const rewriteRoom = 64

// chunkPools hold the chunks by size: 4, 8, 16, 32 and 64 KiB.
var chunkPools [5]sync.Pool

// getChunk returns the i-th chunk of a body.
func getChunk(i int) *[]byte {
	class := min(i, len(chunkPools)-1)
	if b, ok := chunkPools[class].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, firstChunk<<class)
	return &b
}

func putChunk(b *[]byte) {
	chunkPools[bits.Len(uint(len(*b)/firstChunk))-1].Put(b)
}

// bodyBudget counts the request body bytes held in memory by all requests
// of a Handler.
type bodyBudget struct {
	max  atomic.Int64 // negative: no limit; Reconfigure changes it
	used atomic.Int64
}

// take reserves n bytes; false means the budget is spent (nothing taken).
func (b *bodyBudget) take(n int64) bool {
	if n <= 0 {
		return true
	}
	if limit := b.max.Load(); b.used.Add(n) > limit && limit >= 0 {
		b.used.Add(-n)
		return false
	}
	return true
}

// give returns n bytes taken before.
func (b *bodyBudget) give(n int64) {
	if n > 0 {
		b.used.Add(-n)
	}
}

// bufferBody reads a request body from r: declared bytes, or up to the
// end when declared is negative (a chunked body), at most MaxBodyBytes.
// A declared body up to bodyChunk is read into *small when it is large
// enough (small may be nil), kept there for the next request when it is
// not (with rewriteRoom bytes of room past it). Longer bodies are read into pooled chunks as they arrive and copied
// into one slice of their size at the end, so a client that declares
// 32 MiB and sends one byte holds one chunk. held is what the body takes
// of h.buffered: the caller gives it back when the request is done.
func (h *Handler) bufferBody(r io.Reader, declared int64, small *[]byte) (body []byte, held int64, aerr *apiError) {
	max := h.opts.MaxBodyBytes
	if declared > max {
		return nil, 0, errBodyTooLarge(max)
	}
	if declared == 0 {
		return nil, 0, nil
	}
	if declared > 0 && declared <= bodyChunk {
		if !h.buffered.take(declared) {
			return nil, 0, errOverloaded()
		}
		var b []byte
		switch {
		case small == nil:
			b = make([]byte, declared)
		case int64(cap(*small)) >= declared:
			b = (*small)[:declared]
		default:
			b = make([]byte, declared, declared+rewriteRoom)
			if declared <= maxKeptBody {
				*small = b
			}
		}
		if _, err := io.ReadFull(r, b); err != nil {
			h.buffered.give(declared)
			return nil, 0, errBodyRead(err)
		}
		return b, declared, nil
	}

	var chunks []*[]byte
	reserved := int64(0) // of h.buffered, for the chunks
	defer func() {
		for _, c := range chunks {
			putChunk(c)
		}
		h.buffered.give(reserved)
	}()
	var total int64
	used, size := 0, 0 // of the last chunk
	for {
		if used == size {
			c := getChunk(len(chunks))
			size = len(*c)
			if !h.buffered.take(int64(size)) {
				putChunk(c)
				return nil, 0, errOverloaded()
			}
			reserved += int64(size)
			chunks = append(chunks, c)
			used = 0
		}
		p := (*chunks[len(chunks)-1])[used:]
		if declared > 0 && int64(len(p)) > declared-total {
			p = p[:declared-total]
		}
		n, err := r.Read(p)
		used += n
		total += int64(n)
		if declared < 0 && total > max {
			return nil, 0, errBodyTooLarge(max)
		}
		if total == declared {
			break
		}
		if err == io.EOF {
			if declared > 0 {
				return nil, 0, errBodyRead(io.ErrUnexpectedEOF)
			}
			break
		}
		if err != nil {
			return nil, 0, errBodyRead(err)
		}
	}
	if total == 0 {
		return nil, 0, nil
	}
	// The body's own slice takes over the chunks' reservation (it is no
	// larger); the chunks go back to the pool once copied.
	reserved -= total
	body = make([]byte, total)
	off := 0
	for _, c := range chunks {
		off += copy(body[off:], *c)
	}
	return body, total, nil
}

// errBodyRead is the answer to a request body that could not be read: its
// deadline passed (408), or it was cut or malformed (400).
func errBodyRead(err error) *apiError {
	if isTimeout(err) {
		return &apiError{status: http.StatusRequestTimeout, typ: "invalid_request_error", code: "request_timeout",
			msg: "the request body did not arrive in time"}
	}
	return errBadBody(err)
}

// errOverloaded answers a request whose body would pass the gateway's
// budget of request bytes held in memory.
func errOverloaded() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, typ: "server_error", code: "overloaded",
		msg: "the gateway holds too many request bodies in memory; send the request again shortly", retryAfter: overloadedRetryAfter}
}

// overloadedRetryAfter is the Retry-After, in seconds, of an overloaded
// answer: bodies in memory are usually gone within a second.
const overloadedRetryAfter = "1"

// BufferedBytes reports the request body bytes held in memory now, which
// Options.MaxBufferedBytes bounds.
func (h *Handler) BufferedBytes() int64 { return h.buffered.used.Load() }
