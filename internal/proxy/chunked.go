package proxy

import (
	"errors"
	"fmt"
)

// chunkParser follows HTTP/1.1 chunked framing (RFC 9112 section 7.1)
// across reads, handing out the data and finding the end of the last
// chunk's trailer section.
type chunkParser struct {
	state   uint8
	size    int64 // data bytes left in the current chunk
	digits  int
	lineLen int
	done    bool
}

// feed consumes b up to the end of the body and returns how many bytes
// belong to it, calling data with each run of chunk data.
func (p *chunkParser) feed(b []byte, data func([]byte)) (int, error) {
	i := 0
	for i < len(b) && !p.done {
		c := b[i]
		switch p.state {
		case chunkSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if p.digits == 15 {
					return 0, errors.New("chunk size too large")
				}
				p.size = p.size<<4 | int64(unhex(c))
				p.digits++
			case c == ';' || c == ' ' || c == '\t' || c == '\r':
				if p.digits == 0 {
					return 0, errors.New("missing chunk size")
				}
				p.state, p.lineLen = chunkExt, 0
			case c == '\n':
				if p.digits == 0 {
					return 0, errors.New("missing chunk size")
				}
				p.endSizeLine()
			default:
				return 0, fmt.Errorf("bad chunk size byte %q", c)
			}
			i++
		case chunkExt:
			if c == '\n' {
				p.endSizeLine()
			} else if p.lineLen++; p.lineLen > maxChunkLine {
				return 0, errors.New("chunk extension too long")
			}
			i++
		case chunkData:
			n := min(int64(len(b)-i), p.size)
			data(b[i : i+int(n)])
			i += int(n)
			if p.size -= n; p.size == 0 {
				p.state = chunkDataCR
			}
		case chunkDataCR:
			switch c {
			case '\r':
				p.state = chunkDataLF
			case '\n':
				p.state = chunkSize
			default:
				return 0, errors.New("chunk data longer than its size")
			}
			i++
		case chunkDataLF:
			if c != '\n' {
				return 0, errors.New("chunk data longer than its size")
			}
			p.state = chunkSize
			i++
		case chunkTrailer:
			switch c {
			case '\r':
			case '\n':
				p.done = true
			default:
				p.state, p.lineLen = chunkTrailerL, 0
			}
			i++
		case chunkTrailerL:
			if c == '\n' {
				p.state = chunkTrailer
			} else if p.lineLen++; p.lineLen > maxChunkLine {
				return 0, errors.New("trailer line too long")
			}
			i++
		}
	}
	return i, nil
}

func (p *chunkParser) endSizeLine() {
	p.digits = 0
	if p.size == 0 {
		p.state = chunkTrailer
		return
	}
	p.state = chunkData
}

const (
	chunkSize     = iota // hex digits
	chunkExt             // extension up to LF
	chunkData            // size bytes
	chunkDataCR          // CR after data
	chunkDataLF          // LF after data
	chunkTrailer         // start of a trailer line (or the final CRLF)
	chunkTrailerL        // inside a trailer line
)

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4096

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

var lastChunk = []byte("0\r\n\r\n")
