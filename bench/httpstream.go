package main

// A minimal HTTP/1.1 client for streamed completions: one connection per
// stream, the request written by hand and the response parsed read by read,
// so that the time of every socket read is known and two SSE events that
// arrive in one read are seen as such. net/http's layered readers hide both.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// sseEvent is one server-sent event as the client received it.
type sseEvent struct {
	id     string // the completion id ("chatcmpl-..."), when recorded
	readAt int64  // wall clock (Unix ns) when the read that completed it returned
	read   int    // which read of the stream completed it (from 1)
}

// streamResult is one streamed request's outcome.
type streamResult struct {
	status int
	sent   int64 // wall clock (Unix ns) when the request was written
	events []sseEvent
	done   bool // "data: [DONE]" arrived
	err    error
}

// rawChatRequest is the bytes of a streamed chat completion request.
func rawChatRequest(addr string, maxTokens int, prompt string) []byte {
	body := chatBody(maxTokens, true, prompt)
	return []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: " + addr +
		"\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// dialStream connects to addr for one stream.
func dialStream(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

// streamOpts say how runStream reads.
type streamOpts struct {
	deadline time.Time // bound on the whole stream
	bufSize  int       // bytes per read
	keepIDs  bool      // record each event's completion id
	onFirst  func()    // called at the first event; nil: nothing
}

// runStream writes req on c and reads the streamed answer until [DONE],
// the end of the body, an error or the deadline. c is closed on return.
func runStream(c net.Conn, req []byte, o streamOpts) streamResult {
	defer c.Close()
	var res streamResult
	_ = c.SetDeadline(o.deadline)
	if _, err := c.Write(req); err != nil {
		res.err = fmt.Errorf("write request: %w", err)
		return res
	}
	res.sent = time.Now().UnixNano()
	var p respParser
	buf := make([]byte, o.bufSize)
	for reads := 1; ; reads++ {
		n, err := c.Read(buf)
		now := time.Now().UnixNano()
		if n > 0 {
			end, perr := p.feed(buf[:n], func(ev []byte) {
				if bytes.HasPrefix(ev, []byte("data: [DONE]")) {
					res.done = true
					return
				}
				if !bytes.HasPrefix(ev, []byte("data: {")) {
					return // comments, keep-alives
				}
				e := sseEvent{readAt: now, read: reads}
				if o.keepIDs {
					e.id = completionID(ev)
				}
				if len(res.events) == 0 && o.onFirst != nil {
					o.onFirst()
				}
				res.events = append(res.events, e)
			})
			res.status = p.status
			if perr != nil {
				res.err = perr
				return res
			}
			if res.done || end {
				return res
			}
		}
		if err != nil {
			res.err = fmt.Errorf("read answer: %w", err)
			return res
		}
	}
}

// completionID returns the value of the first "id" field in b (an SSE
// event or a packet holding some), or "".
func completionID(b []byte) string {
	const key = `"id":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// Parser states.
const (
	stHead      = iota // reading the status line and headers
	stChunkSize        // reading a chunk-size line
	stChunkData        // reading chunk data
	stChunkEnd         // skipping the CRLF after chunk data
	stIdentity         // reading a body delimited by Content-Length or close
	stDone             // the body ended
)

// maxHead bounds the response head.
const maxHead = 64 << 10

// respParser decodes an HTTP/1.1 response fed in arbitrary pieces: the head,
// then a chunked or identity body, split into SSE events (separated by a
// blank line). Its zero value is ready to parse.
type respParser struct {
	state    int
	status   int
	head     []byte
	line     []byte // partial chunk-size line
	left     int64  // bytes left in the chunk, or of the Content-Length body (-1: until close)
	crlfLeft int    // bytes of CRLF left to skip after chunk data
	sse      []byte // body bytes not yet split into events
}

// feed consumes b, calls onEvent for each complete event, and reports
// whether the body has ended.
func (p *respParser) feed(b []byte, onEvent func([]byte)) (bool, error) {
	for len(b) > 0 && p.state != stDone {
		switch p.state {
		case stHead:
			p.head = append(p.head, b...)
			b = nil
			i := bytes.Index(p.head, []byte("\r\n\r\n"))
			if i < 0 {
				if len(p.head) > maxHead {
					return false, fmt.Errorf("response head over %d bytes", maxHead)
				}
				continue
			}
			b = p.head[i+4:]
			if err := p.parseHead(p.head[:i]); err != nil {
				return false, err
			}
			p.head = nil
		case stChunkSize:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				p.line = append(p.line, b...)
				b = nil
				continue
			}
			p.line = append(p.line, b[:i]...)
			b = b[i+1:]
			s, _, _ := strings.Cut(strings.TrimSpace(string(p.line)), ";")
			p.line = p.line[:0]
			n, err := strconv.ParseInt(s, 16, 64)
			if err != nil || n < 0 {
				return false, fmt.Errorf("bad chunk size %q", s)
			}
			if n == 0 {
				p.state = stDone // trailers, if any, are not read
				continue
			}
			p.left, p.state = n, stChunkData
		case stChunkData, stIdentity:
			n := int64(len(b))
			if p.left >= 0 {
				n = min(n, p.left)
				p.left -= n
			}
			p.sse = append(p.sse, b[:n]...)
			b = b[n:]
			p.splitEvents(onEvent)
			if p.left == 0 {
				if p.state == stIdentity {
					p.state = stDone
				} else {
					p.state, p.crlfLeft = stChunkEnd, 2
				}
			}
		case stChunkEnd:
			n := min(len(b), p.crlfLeft)
			b, p.crlfLeft = b[n:], p.crlfLeft-n
			if p.crlfLeft == 0 {
				p.state = stChunkSize
			}
		}
	}
	return p.state == stDone, nil
}

// parseHead reads the status code and the body's framing.
func (p *respParser) parseHead(head []byte) error {
	lines := strings.Split(string(head), "\r\n")
	f := strings.Fields(lines[0])
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return fmt.Errorf("bad status line %q", lines[0])
	}
	code, err := strconv.Atoi(f[1])
	if err != nil {
		return fmt.Errorf("bad status line %q: %w", lines[0], err)
	}
	p.status = code
	p.state, p.left = stIdentity, -1
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "transfer-encoding":
			if strings.EqualFold(v, "chunked") {
				p.state = stChunkSize
			}
		case "content-length":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("bad Content-Length %q", v)
			}
			if p.state == stIdentity {
				p.left = n
			}
		}
	}
	if p.state == stIdentity && p.left == 0 {
		p.state = stDone
	}
	if code != 200 {
		return fmt.Errorf("HTTP %d", code)
	}
	return nil
}

// splitEvents hands every complete event in p.sse to onEvent.
func (p *respParser) splitEvents(onEvent func([]byte)) {
	for {
		i := bytes.Index(p.sse, []byte("\n\n"))
		if i < 0 {
			return
		}
		onEvent(p.sse[:i])
		p.sse = p.sse[i+2:]
	}
}
