package proxy

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// connTokens is what a message's Connection header fields say, read once
// per message: whether they ask to close or keep the connection, and the
// set of header names they list (hop-by-hop for this message, RFC 9110
// section 7.6.1). Both serving paths strip headers with it, so stripping
// costs one pass over the Connection values and one lookup per header
// field, whatever the shape of the head (a list of half a million names
// used to be rescanned for every header line). The zero value is empty.
type connTokens struct {
	close     bool // a "close" token
	keepAlive bool // a "keep-alive" token

	n        int                  // names in few
	few      [maxFewTokens]string // the distinct names, while they fit
	overflow bool                 // more than few holds: the names are in many
	many     map[string]struct{}  // all distinct names, lower-cased, once overflowed
}

// add records the tokens of one Connection field value.
func (s *connTokens) add(v []byte) { addConnTokens(s, v) }

// addString records the tokens of one Connection field value.
func (s *connTokens) addString(v string) { addConnTokens(s, v) }

// has reports whether the Connection fields list the header name. With
// none listed (nearly every message), that is known without a call.
func (s *connTokens) has(name []byte) bool {
	return (s.n != 0 || s.close || s.keepAlive || s.overflow) && hasConnName(s, name)
}

// hasString reports whether the Connection fields list the header name.
func (s *connTokens) hasString(name string) bool { return hasConnName(s, name) }

// maxFewTokens is how many distinct names connTokens compares one by one
// before it switches to a map. Real clients list one or two, if any.
const maxFewTokens = 8

// addConnTokens splits a comma-separated list, trimming optional
// whitespace (SP and HTAB only, as net/http does) around each element.
// "close" and "keep-alive" are kept as flags (has still finds them), so
// common heads allocate nothing.
func addConnTokens[T ~string | ~[]byte](s *connTokens, v T) {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		tok := trimOWS(v[:i])
		if i < len(v) {
			i++
		}
		v = v[i:]
		switch {
		case len(tok) == 0:
		case asciiEqualFold(tok, "close"):
			s.close = true
		case asciiEqualFold(tok, "keep-alive"):
			s.keepAlive = true
		default:
			addConnName(s, tok)
		}
	}
}

func addConnName[T ~string | ~[]byte](s *connTokens, tok T) {
	if !s.overflow {
		for _, f := range s.few[:s.n] {
			if asciiEqualFold(tok, f) {
				return
			}
		}
		if s.n < maxFewTokens {
			s.few[s.n] = string(tok)
			s.n++
			return
		}
		if s.many == nil {
			s.many = make(map[string]struct{}, 2*maxFewTokens)
		}
		for _, f := range s.few[:s.n] {
			s.many[lowerASCII(f)] = struct{}{}
		}
		s.overflow = true
	}
	var buf [64]byte
	key := appendLowerASCII(buf[:0], tok)
	if _, ok := s.many[string(key)]; !ok { // a lookup does not allocate
		s.many[string(key)] = struct{}{}
	}
}

func hasConnName[T ~string | ~[]byte](s *connTokens, name T) bool {
	if (s.close && asciiEqualFold(name, "close")) || (s.keepAlive && asciiEqualFold(name, "keep-alive")) {
		return true // a header of that name is listed too
	}
	if !s.overflow {
		for _, f := range s.few[:s.n] {
			if asciiEqualFold(name, f) {
				return true
			}
		}
		return false
	}
	var buf [64]byte
	_, ok := s.many[string(appendLowerASCII(buf[:0], name))]
	return ok
}

// asciiEqualFold compares ASCII case-insensitively; other bytes must be
// equal.
func asciiEqualFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func appendLowerASCII[T ~string | ~[]byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func lowerASCII(s string) string { return string(appendLowerASCII(nil, s)) }

// trimOWS trims SP and HTAB from both ends of b.
func trimOWS[T ~string | ~[]byte](b T) T {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// skipRequestHeader reports request headers never forwarded, on either
// path: hop-by-hop ones, the ones the request writers set themselves, a
// client's forwarding headers (clientForwarded) and Expect (the gateway's
// server answered it; the whole body follows).
func skipRequestHeader(name []byte) bool {
	return hopByHop(name) || nameHost.is(name) || nameExpect.is(name) ||
		nameContentLength.is(name) || clientForwarded(name)
}

// clientForwarded reports the forwarding headers a client may not set for
// the replica, in any case: Forwarded (RFC 7239) and X-Forwarded-For,
// -Host and -Proto, the ones Go's httputil.ReverseProxy drops with its
// Rewrite hook. The gateway writes its own X-Forwarded-For.
func clientForwarded(name []byte) bool {
	return uint(len(name)) < 64 && forwardedLengths&(1<<uint(len(name))) != 0 && clientForwardedName(name)
}

// forwardedLengths has bit n set for each length n of a name
// clientForwarded reports.
const forwardedLengths = 1<<9 | 1<<15 | 1<<16 | 1<<17

// clientForwardedName is clientForwarded for a name of one of
// forwardedLengths.
func clientForwardedName(name []byte) bool {
	switch len(name) {
	case 9:
		return equalFold(name, "Forwarded")
	case 15:
		return equalFold(name, "X-Forwarded-For")
	case 16:
		return equalFold(name, "X-Forwarded-Host")
	case 17:
		return equalFold(name, "X-Forwarded-Proto")
	}
	return false
}

// skipResponseHeader reports replica response headers not relayed as
// they are: hop-by-hop ones and the gateway's own.
func skipResponseHeader(name []byte, streaming bool) bool {
	return hopByHop(name) || nameCutoverPool.is(name) || nameCutoverReplica.is(name) ||
		(streaming && equalFold(name, "X-Accel-Buffering"))
}

// replicaLocation makes a Location value that points into the replica
// base (its Name: scheme, host and path prefix) relative to the gateway
// ("/v1/models"), as nginx's proxy_redirect default does: a replica builds
// its redirects from the Host the gateway sent it (a slash redirect of
// FastAPI, which vLLM runs on), and relayed as they are they would send
// the client past the gateway, its keys and its pool switch, to the
// replica's address. false: v points elsewhere, and stays.
func replicaLocation(v []byte, base string) ([]byte, bool) {
	// Scheme and host in any case, the path prefix exactly.
	auth := len(base)
	if i := strings.Index(base, "://"); i >= 0 {
		if j := strings.IndexByte(base[i+3:], '/'); j >= 0 {
			auth = i + 3 + j
		}
	}
	if len(v) < len(base) || !equalFold(v[:auth], base[:auth]) || string(v[auth:len(base)]) != base[auth:] {
		return nil, false
	}
	rest := v[len(base):]
	switch {
	case len(rest) > 0 && rest[0] == '/':
		return rest, true
	case len(rest) == 0 || rest[0] == '?' || rest[0] == '#':
		return append([]byte{'/'}, rest...), true
	}
	return nil, false // another port or path: "http://h:8000" is not "http://h:80001"
}

// hopByHop reports the hop-by-hop headers of RFC 9110 section 7.6.1 and
// their older companions, in any case. The length picks the one candidate
// worth comparing.
func hopByHop(name []byte) bool {
	// The lengths first, inlined: most names have none of them.
	return uint(len(name)) < 64 && hopLengths&(1<<uint(len(name))) != 0 && hopByHopName(name)
}

// hopLengths has bit n set for each length n of a hop-by-hop name.
const hopLengths = 1<<2 | 1<<7 | 1<<10 | 1<<16 | 1<<17 | 1<<18 | 1<<19

// hopByHopName is hopByHop for a name of one of hopLengths.
func hopByHopName(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "Te")
	case 7:
		return equalFold(name, "Trailer") || equalFold(name, "Upgrade")
	case 10:
		return equalFold(name, "Connection") || equalFold(name, "Keep-Alive")
	case 16:
		return equalFold(name, "Proxy-Connection")
	case 17:
		return equalFold(name, "Transfer-Encoding")
	case 18:
		return equalFold(name, "Proxy-Authenticate")
	case 19:
		return equalFold(name, "Proxy-Authorization")
	}
	return false
}

// removeHopHeaders strips the hop-by-hop headers (hopByHop) and those the
// Connection header names.
func removeHopHeaders(h http.Header) {
	var conn connTokens
	for _, f := range h["Connection"] {
		conn.addString(f)
	}
	for k := range h {
		if hopByHop([]byte(k)) || conn.hasString(k) {
			delete(h, k)
		}
	}
}

func appendCutoverHeaders(b []byte, e *route.Entry, rep *pool.Replica) []byte {
	if e != nil {
		b = append(b, "X-Cutover-Pool: "...)
		b = append(b, e.Pool.Name...)
		b = append(b, "\r\n"...)
	}
	if rep != nil {
		b = append(b, "X-Cutover-Replica: "...)
		b = append(b, rep.Name...)
		b = append(b, "\r\n"...)
	}
	return b
}

// writeRequest builds the request head, and a small body, in pc.out:
// the answer's first wait sends it (upConn.fill), so that the look at a
// reused connection, the write and that wait are one turn of the poller.
// A large body is written here, after the head.
func (x *rawExchange) writeRequest(pc *upConn, host, prefix string, cred credentials) error {
	sc := x.sc
	r := &sc.req
	b := pc.takeOut()
	b = append(b, r.method...)
	b = append(b, ' ')
	b = append(b, prefix...)
	b = append(b, r.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	tr := x.obs.trace
	for _, f := range sc.fields {
		name := sc.head[f.ns:f.ne]
		if skipRequestHeader(name) || r.conn.has(name) || (cred.dropClient && equalFold(name, "Authorization")) || (tr != nil && isTraceField(name)) ||
			nameHops.is(name) {
			continue
		}
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, sc.head[f.vs:f.ve]...)
		b = append(b, "\r\n"...)
	}
	if cred.value != "" {
		b = append(b, "Authorization: "...)
		b = append(b, cred.value...)
		b = append(b, "\r\n"...)
	}
	if tr != nil {
		b = tr.appendFields(b)
	}
	if sc.ip != "" {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, sc.ip...)
		b = append(b, "\r\n"...)
	}
	b = appendHops(b, sc.req.hops)
	if len(x.body) > 0 || r.method == http.MethodPost || r.method == http.MethodPut || r.method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(x.body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	small := len(x.body) <= smallBody
	if small {
		b = append(b, x.body...)
	}
	*pc.out = b
	if small {
		return nil
	}
	// A read deadline left from the connection's last answer may have
	// passed; the answer's wait sets its own.
	pc.setReadDeadline(time.Time{})
	if err := pc.flush(false); err != nil {
		return err
	}
	pc.wrote = time.Time{} // not whole before the body is
	if err := x.writeBody(pc); err != nil {
		return err
	}
	pc.wrote = time.Now()
	return nil
}

// writeForward writes a forwarded request's head and body.
func writeForward(bw *bufio.Writer, host, method, target string, hdr http.Header, xff string, cred credentials, body []byte) error {
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	var conn connTokens
	for _, v := range hdr["Connection"] {
		conn.addString(v)
	}
	for k, vs := range hdr {
		if skipRequestHeader([]byte(k)) || conn.hasString(k) || (cred.dropClient && k == "Authorization") || k == hopsHeader {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if cred.value != "" {
		bw.WriteString("Authorization: ")
		bw.WriteString(cred.value)
		bw.WriteString("\r\n")
	}
	if xff != "" {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(xff)
		bw.WriteString("\r\n")
	}
	var num [24]byte
	bw.Write(appendHops(num[:0], hopsOf(hdr)))
	if len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], int64(len(body)), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(body)
	return bw.Flush()
}
