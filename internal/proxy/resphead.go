package proxy

import (
	"bufio"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// rawResp is what the exchange read of the replica's response head.
type rawResp struct {
	status        int
	reason        []byte // code and reason phrase, from the status line
	contentLength int64  // -1: not given
	chunked       bool
	closeDelim    bool // body ends when the replica closes
	bodiless      bool
	close         bool // the replica closes after this answer
	sse           bool
	fields        []hfield // into sc.uhead
	conn          connTokens
}

// maxResponseHead bounds a replica's response head.
const maxResponseHead = 1 << 20

// readHead reads the replica's response head (skipping 1xx answers).
func (x *rawExchange) readHead() error {
	sc := x.sc
	x.armed = armUnknown // a reused connection may carry an old deadline
	for {
		if err := x.wait(armHeader); err != nil {
			return err
		}
		sc.uhead = sc.uhead[:0]
		rr := x.resp
		if !x.readBufferedHead(rr) {
			for {
				start, err := x.readLine()
				if err != nil {
					return err
				}
				line := trimEOL(sc.uhead[start:])
				if start == 0 {
					// A replica that is not speaking HTTP fails at once.
					if _, _, err := parseStatusLine(line); err != nil {
						return err
					}
				} else if len(line) == 0 {
					break
				}
			}
			if err := parseResponseHead(sc.uhead, rr); err != nil {
				return err
			}
		}
		if code := rr.status; code >= 100 && code < 200 {
			if code == http.StatusSwitchingProtocols {
				return errors.New("the replica switched protocols, which the gateway does not relay")
			}
			continue
		}
		rr.frame(sc.req.method)
		return nil
	}
}

// readLine appends the next line of the response head to sc.uhead and
// returns where it starts, waiting through the watcher's deadlines.
func (x *rawExchange) readLine() (int, error) {
	sc := x.sc
	start := len(sc.uhead)
	for {
		var err error
		sc.uhead, err = appendLine(x.pc.br, sc.uhead, maxResponseHead)
		switch {
		case err == nil:
			return start, nil
		case err == bufio.ErrBufferFull:
		case isTimeout(err) && x.armed == armWatch:
			x.sc.startWatch()
			x.arm(armHeader)
		default:
			x.timedOut = x.armed
			return 0, err
		}
	}
}

// appendHead builds the client's response head from the replica's.
func (x *rawExchange) appendHead(b []byte, streaming bool) []byte {
	sc, rr := x.sc, x.resp
	b = append(b, "HTTP/1.1 "...)
	b = append(b, rr.reason...)
	b = append(b, "\r\n"...)
	for _, f := range rr.fields {
		name := sc.uhead[f.ns:f.ne]
		if skipResponseHeader(name, streaming) || rr.conn.has(name) {
			continue
		}
		if (rr.chunked || rr.closeDelim) && equalFold(name, "Content-Length") {
			continue // Transfer-Encoding wins over it (RFC 9112 section 6.3)
		}
		if len(name) == len("Location") && equalFold(name, "Location") && x.obs.Replica != nil {
			if rel, ok := replicaLocation(sc.uhead[f.vs:f.ve], x.obs.Replica.Name); ok {
				b = append(b, name...)
				b = append(b, ": "...)
				b = append(b, rel...)
				b = append(b, "\r\n"...)
				continue
			}
		}
		b = append(b, sc.uhead[f.ns:f.ve]...)
		b = append(b, "\r\n"...)
	}
	if rr.chunked || rr.closeDelim {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = appendCutoverHeaders(b, x.e, x.h.shownReplica(x.obs.Replica))
	if streaming {
		b = append(b, "X-Accel-Buffering: no\r\n"...)
	}
	if sc.req.close || sc.s.shutdown.Load() {
		b = append(b, "Connection: close\r\n"...)
		sc.saidClose = true
	}
	return append(b, "\r\n"...)
}

// Cached Date header value, one format per second.
type dateValue struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateValue]

func appendDate(b []byte, now time.Time) []byte {
	d := cachedDate.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateValue{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		cachedDate.Store(d)
	}
	b = append(b, "Date: "...)
	b = append(b, d.b...)
	return append(b, "\r\n"...)
}

// appendStatusLine writes "HTTP/1.1 <code> <reason>\r\n".
func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	return append(b, "\r\n"...)
}
