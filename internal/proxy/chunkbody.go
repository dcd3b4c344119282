package proxy

import (
	"bufio"
	"fmt"
	"io"
)

// chunkedBody decodes a replica's chunked body from br and hands out the
// data it has as soon as it has it. Go's own chunked reader (behind
// http.ReadResponse) waits for the rest of a chunk that came in part,
// which would hold the first half of an SSE event until the replica
// sends the second.
type chunkedBody struct {
	br  *bufio.Reader
	p   chunkParser
	err error // sticky: io.EOF after the last chunk, or what broke
}

// Read returns the chunk data buffered, waiting only while none is.
func (b *chunkedBody) Read(out []byte) (int, error) {
	if len(out) == 0 || b.err != nil {
		return 0, b.err
	}
	for {
		if b.p.done {
			b.err = io.EOF
			return 0, b.err
		}
		if _, err := b.br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
			return 0, err
		}
		// Data taken never exceeds the bytes fed, so out holds it.
		in, _ := b.br.Peek(min(b.br.Buffered(), len(out)))
		n := 0
		used, err := b.p.feed(in, func(d []byte) { n += copy(out[n:], d) })
		if err != nil {
			b.err = fmt.Errorf("chunked body: %w", err)
			return n, b.err
		}
		_, _ = b.br.Discard(used)
		if n > 0 {
			return n, nil
		}
	}
}

// Close does nothing: the connection is the caller's (upBody).
func (b *chunkedBody) Close() error { return nil }
