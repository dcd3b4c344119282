package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"

	"github.com/cutover-dev/cutover/internal/errconn"
)

// The HTTP/1.1 head parsers of the connection loop: pure functions over
// the bytes of one head, with no socket, buffer or deadline in them (the
// loop reads a head whole, bounded by its limits, then parses it). Both
// are fuzzed against net/http's readers (head_test.go): what the request
// parser accepts, http.ReadRequest and net/http's server accept with the
// same meaning; what it rejects, they reject; what it cannot decide alone
// it hands to net/http, the reference.

// requestHead is what parseRequestHead made of a request head.
type requestHead struct {
	rawReq
	fields   []hfield // the header lines, as offsets into the head
	verdict  int      // headOK, headBad or headFallback
	status   int      // headBad's answer
	reason   string   // headBad's reason for the client, "" for the generic one
	fallback string   // headFallback's reason (Server.OnFallback's)
	end      int      // the head's length, to the end of its empty line
}

// parseRequestHead parses b, a request head from its request line to the
// empty line that ends it (CRLF or bare LF line ends), into h, reusing
// h.fields' storage. Bytes after the empty line are not looked at (h.end
// says where it ends). The verdict says what the loop does with it:
//
//   - headOK: it serves the request itself. An HTTP/1.1 origin-form
//     request with exactly one Host, a Content-Length body or none, and
//     at most "Expect: 100-continue".
//   - headBad: it answers h.status and closes: what net/http's server
//     refuses too (a malformed request line, header line, value or
//     Content-Length, a bad escape in the path, no Host or two), and,
//     deliberately, Transfer-Encoding in an HTTP/1.0 request, which
//     net/http ignores (RFC 9112 section 6.1: faulty framing; h.reason
//     says so).
//   - headFallback: net/http serves the connection, replaying the head:
//     other versions and target forms, Transfer-Encoding (with
//     rawReq.framingConflict when a Content-Length came along), other
//     Expect values, a Host net/http might refuse, obsolete line folding.
func parseRequestHead(b []byte, h *requestHead) {
	*h = requestHead{rawReq: rawReq{contentLength: -1}, fields: h.fields[:0]}
	r := &h.rawReq
	bad := func() { h.verdict, h.status = headBad, http.StatusBadRequest }

	line, rest := nextLine(b)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		bad()
		return
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		bad()
		return
	}
	method, target, proto := line[:sp1], line[sp1+1:sp1+1+sp2], line[sp1+2+sp2:]
	visible := visibleASCII(target)
	if !isToken(method) || (!visible && hasCTL(target)) {
		// A control byte in the target (a bare CR above all) is a
		// smuggling tool against lenient parsers further on.
		bad()
		return
	}
	// why is the first reason found to hand the connection to net/http.
	// The head is still read to its end, for the framing, and once it is
	// set net/http judges whatever else is wrong.
	why := ""
	switch {
	case string(proto) != "HTTP/1.1":
		// HTTP/1.0 (no chunked answers, other keep-alive rules), other
		// versions: net/http decides.
		why = "http_version"
	case target[0] != '/' || !visible:
		why = "target_form"
	}
	r.method = internMethod(method)
	r.target = target
	pos := len(b) - len(rest) // where the next line starts
	hosts, hostOK, te, hopsSeen := 0, true, false, false
	teFields, teChunked := 0, false
	var cl []byte // the first Content-Length value
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			bad() // no empty line: not a whole head
			return
		}
		start, end := pos, pos+i
		pos = end + 1
		if end > start && b[end-1] == '\r' {
			end--
		}
		line := b[start:end]
		if len(line) == 0 {
			h.end = pos
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding: net/http joins the lines (or
			// refuses a fold of nothing); RFC 9112 section 5.2 allows
			// either.
			if why == "" {
				why = "line_folding"
			}
			continue
		}
		colon, vs, ve := splitField(line)
		if colon == 0 || !validFieldValue(line[vs:ve]) {
			if why == "" {
				bad()
			} else {
				h.verdict, h.fallback = headFallback, why
			}
			return
		}
		name, val := line[:colon], line[vs:ve]
		h.fields = append(h.fields, hfield{ns: int32(start), ne: int32(start + colon), vs: int32(start + vs), ve: int32(start + ve)})
		switch {
		case len(name) < 4 || len(name) > 17:
			// None of the names below.
		case nameContentLength.is(name):
			// As net/http: every value the same text, digits only.
			n, ok := parseContentLength(val)
			if !ok || (cl != nil && !bytes.Equal(cl, val)) {
				if why == "" {
					bad()
				} else {
					h.verdict, h.fallback = headFallback, why
				}
				return
			}
			cl, r.contentLength = val, n
		case nameTransferEncoding.is(name):
			te = true // net/http decodes it
			teFields++
			teChunked = equalFold(val, "chunked")
		case nameHost.is(name):
			hosts++
			hostOK = hostOK && plainHost(val)
		case nameConnection.is(name):
			r.conn.add(val)
		case nameExpect.is(name):
			switch {
			case equalFold(val, "100-continue"):
				r.continue100 = true
			case why == "":
				why = "expect"
			}
		case nameHops.is(name):
			if !hopsSeen { // the first counts
				r.hops, hopsSeen = parseHops(val), true
			}
		}
	}
	r.close = r.conn.close
	if why == "" && hosts != 1 {
		bad() // HTTP/1.1 needs exactly one
		return
	}
	if te && string(proto) == "HTTP/1.0" {
		// net/http would read the body by Content-Length, or as empty:
		// the replica would get another request than the client sent.
		h.verdict, h.status, h.reason = headBad, http.StatusBadRequest, reasonHTTP10TE
		return
	}
	if te && why == "" {
		// net/http's server refuses these too, but in plain text: one
		// Transfer-Encoding field, chunked alone, or the request gets
		// 501 here in the OpenAI error shape, as net/http answers.
		if teFields > 1 || !teChunked {
			h.verdict, h.status = headBad, http.StatusNotImplemented
			return
		}
	}
	if te {
		// Both framings (RFC 9112 section 6.1): net/http reads the body
		// by Transfer-Encoding; the connection closes after the answer.
		r.framingConflict = cl != nil
		r.contentLength = -1
		if why == "" {
			why = "chunked_body"
		}
	}
	if why == "" && !hostOK {
		why = "host"
	}
	if why != "" {
		h.verdict, h.fallback = headFallback, why
		return
	}
	p := r.target
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	if bytes.IndexByte(p, '%') >= 0 {
		dp, err := url.PathUnescape(string(p))
		if err != nil {
			bad()
			return
		}
		r.path = dp
	} else {
		r.path = internPath(p)
	}
	h.verdict = headOK
}

// reasonHTTP10TE is the reason given for refusing an HTTP/1.0 request
// with a Transfer-Encoding field, on both serving paths.
const reasonHTTP10TE = "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1)"

// errMalformedHead is the answer to a request head refused with status
// (400, 431 or 501), on either serving path; reason names what was wrong,
// "" says only the status.
func errMalformedHead(status int, reason string) *apiError {
	code := errconn.Code(status) // as net/http's own answers get them
	if reason == "" {
		reason = http.StatusText(status)
	}
	return &apiError{status: status, typ: "invalid_request_error", code: code, msg: "malformed request: " + reason}
}

// readBufferedRequest is readRequest's fast path: a request head whole
// in the reader's buffer (as it usually is), with no empty line before
// it, within the limits, that parseRequestHead serves itself, is taken in
// one copy, as the line by line read takes it. ok is false when it was
// not (nothing is consumed then): that read decides.
func (sc *srvConn) readBufferedRequest(max, maxLines int) (verdict, status int, ok bool) {
	buf, _ := sc.br.Peek(sc.br.Buffered())
	if len(buf) == 0 || buf[0] == '\r' || buf[0] == '\n' {
		return 0, 0, false
	}
	ph := requestHead{fields: sc.fields[:0]}
	parseRequestHead(buf, &ph)
	sc.fields = ph.fields[:0] // the storage, for whoever parses next
	if ph.verdict != headOK || ph.end > max || len(ph.fields)+1 > maxLines {
		return 0, 0, false
	}
	sc.head = append(sc.head[:0], buf[:ph.end]...)
	// The target pointed into the reader's buffer; the method's bytes
	// and a space come before it.
	off := len(ph.method) + 1
	ph.target = sc.head[off : off+len(ph.target)]
	_, _ = sc.br.Discard(ph.end)
	sc.req, sc.fields, sc.fallback = ph.rawReq, ph.fields, ph.fallback
	return headOK, 0, true
}

// nextLine splits the first line off b, without its line end (LF or
// CRLF). line is nil when b holds no whole line.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b
	}
	return trimEOL(b[:i+1]), b[i+1:]
}

// splitField parses a header line: line[:colon] is its name, a token,
// then a colon, and line[vs:ve] its value without surrounding blanks.
// colon is 0 when the line is not one.
func splitField(line []byte) (colon, vs, ve int) {
	n := bytes.IndexByte(line, ':')
	if n <= 0 || !isToken(line[:n]) {
		return 0, 0, 0
	}
	vs, ve = n+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	return n, vs, ve
}

// hasCTL reports a control byte (or DEL) in b.
func hasCTL(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// plainHost reports a Host value made of the bytes of host names, IP
// addresses and ports only; net/http judges any other.
func plainHost(b []byte) bool {
	for _, c := range b {
		if hostBytes[c] == 0 {
			return false
		}
	}
	return true
}

// hostBytes is 1 for the bytes plainHost allows.
var hostBytes = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
		t[c-'a'+'A'] = 1
	}
	for _, c := range ".-:[]_" {
		t[c] = 1
	}
	return t
}()

// closeField is added to a replayed head whose connection must close
// after its answer.
var closeField = []byte("Connection: close\r\n")

// appendReplayHead appends a request head the loop read, for net/http to
// read again. With closeAfter, a "Connection: close" field goes before
// the empty line that ends it, so net/http closes the connection after
// answering (all it can be told: the header it gives the Handler no
// longer says that a Content-Length came with the Transfer-Encoding).
func appendReplayHead(dst, head []byte, closeAfter bool) []byte {
	if !closeAfter {
		return append(dst, head...)
	}
	end := len(head) - 1 // the empty line's LF
	if end > 0 && head[end-1] == '\r' {
		end--
	}
	dst = append(dst, head[:end]...)
	dst = append(dst, closeField...)
	return append(dst, head[end:]...)
}

// parseResponseHead parses b, a replica's response head from its status
// line to the empty line that ends it, into rr (reusing rr.fields'
// storage; fields are offsets into b). rr.frame settles the body's
// framing once the request's method is known. It refuses, for a 502,
// what net/http's client refuses (malformed status or header lines, a
// control byte in a value, conflicting or malformed Content-Lengths, a
// transfer coding other than chunked) and, deliberately, a few heads
// net/http would take but the loop cannot relay faithfully: obsolete
// line folding (RFC 9112 section 5.2 allows the 502), a header name
// that is not a token, a control byte in the reason phrase (the loop
// relays the phrase), more than one space before the status code (RFC
// 9112 section 4 has one), a status under 100, HTTP versions other than 1.x
// and Transfer-Encoding in an HTTP/1.0 answer (faulty framing, RFC 9112
// section 6.1).
func parseResponseHead(b []byte, rr *rawResp) error {
	_, err := parseResponseHeadEnd(b, rr)
	return err
}

// parseResponseHeadEnd is parseResponseHead, which does not look past
// the empty line that ends the head: end is the head's length.
func parseResponseHeadEnd(b []byte, rr *rawResp) (end int, err error) {
	line, rest := nextLine(b)
	code, http10, err := parseStatusLine(line)
	if err != nil {
		return 0, err
	}
	*rr = rawResp{status: code, contentLength: -1, fields: rr.fields[:0]}
	rr.reason = line[9:]
	pos := len(b) - len(rest) // where the next line starts
	var cl []byte             // the first Content-Length value
	trailer := false
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return 0, errors.New("response head without its end")
		}
		start, lend := pos, pos+i
		pos = lend + 1
		if lend > start && b[lend-1] == '\r' {
			lend--
		}
		line := b[start:lend]
		if len(line) == 0 {
			end = pos
			break
		}
		colon, vs, ve := splitField(line)
		if colon == 0 {
			return 0, fmt.Errorf("malformed response header line %q", line)
		}
		name, val := line[:colon], line[vs:ve]
		if !validFieldValue(val) {
			// Relayed, a bare CR would split the client's answer.
			return 0, fmt.Errorf("control byte in response header %q", name)
		}
		rr.fields = append(rr.fields, hfield{ns: int32(start), ne: int32(start + colon), vs: int32(start + vs), ve: int32(start + ve)})
		switch {
		case len(name) < 7 || len(name) > 17:
			// None of the names below.
		case nameContentLength.is(name):
			n, ok := parseContentLength(val)
			if !ok || (cl != nil && !bytes.Equal(cl, val)) {
				return 0, fmt.Errorf("bad Content-Length %q", val)
			}
			cl, rr.contentLength = val, n
		case nameTransferEncoding.is(name):
			// Only chunked, as net/http's client: another coding
			// would reach the client undeclared (the header is
			// hop-by-hop), and with a Content-Length beside it the
			// framing would be ambiguous.
			if !equalFold(val, "chunked") || rr.chunked || http10 {
				return 0, fmt.Errorf("unsupported transfer encoding %q", val)
			}
			rr.chunked = true
		case nameConnection.is(name):
			rr.conn.add(val)
		case nameContentType.is(name):
			rr.sse = len(val) >= 17 && equalFold(val[:17], "text/event-stream")
		case nameTrailer.is(name):
			trailer = true
		}
	}
	if trailer && rr.chunked {
		if err := checkTrailerNames(b, rr.fields); err != nil {
			return 0, err
		}
	}
	// HTTP/1.0 answers close unless kept alive.
	rr.close = rr.conn.close || (http10 && !rr.conn.keepAlive)
	return end, nil
}

// readBufferedHead is readHead's fast path: a response head whole in the
// reader's buffer (as it usually is) that parseResponseHead accepts is
// taken into sc.uhead in one parse and one copy, as the line by line read
// takes it. It reports whether it was; if not, nothing is consumed and
// that read decides.
func (x *rawExchange) readBufferedHead(rr *rawResp) bool {
	br := x.pc.br
	if br == nil || br.Buffered() == 0 {
		return false
	}
	buf, _ := br.Peek(br.Buffered())
	end, err := parseResponseHeadEnd(buf, rr)
	if err != nil || end > maxResponseHead {
		return false
	}
	sc := x.sc
	sc.uhead = append(sc.uhead[:0], buf[:end]...)
	rr.reason = sc.uhead[9 : 9+len(rr.reason)] // it pointed into the buffer
	_, _ = br.Discard(end)
	return true
}

// parseStatusLine checks a response's status line (without its line
// end): HTTP/1.x, a status from 100 to 999, a reason phrase free of
// control bytes. http10 reports an HTTP/1.0 answer.
func parseStatusLine(line []byte) (code int, http10 bool, err error) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[7] < '0' || line[7] > '9' || line[8] != ' ' {
		return 0, false, fmt.Errorf("malformed status line %q", line)
	}
	code, ok := parseStatus(line[9:12])
	if !ok || (len(line) > 12 && line[12] != ' ') || hasCTLButTab(line[12:]) {
		return 0, false, fmt.Errorf("malformed status line %q", line)
	}
	return code, line[7] == '0', nil
}

// checkTrailerNames refuses, as net/http's client does, a chunked
// answer whose Trailer field announces framing fields in the trailer.
func checkTrailerNames(b []byte, fields []hfield) error {
	var names connTokens // the same comma-separated token list
	for _, f := range fields {
		if equalFold(b[f.ns:f.ne], "Trailer") {
			names.add(b[f.vs:f.ve])
		}
	}
	for _, k := range []string{"Transfer-Encoding", "Trailer", "Content-Length"} {
		if names.hasString(k) {
			return fmt.Errorf("bad trailer name %q", k)
		}
	}
	return nil
}

// frame settles the body framing of a final (non-1xx) answer to a request
// of method: none, Content-Length, chunked, or until the replica closes.
func (rr *rawResp) frame(method string) {
	switch {
	case method == http.MethodHead || rr.status == http.StatusNoContent || rr.status == http.StatusNotModified:
		rr.bodiless, rr.chunked, rr.closeDelim = true, false, false
	case rr.chunked:
		rr.contentLength = -1
	case rr.contentLength < 0:
		rr.closeDelim = true
	}
	if rr.closeDelim {
		rr.close = true
	}
}

// hasCTLButTab reports a control byte other than HTAB, or DEL, in b.
func hasCTLButTab(b []byte) bool { return !validFieldValue(b) }

// hfield locates one header line's name and value in srvConn.head.
type hfield struct{ ns, ne, vs, ve int32 }

var crlfcrlf = []byte("\r\n\r\n")

// visibleASCII reports whether b holds only printable ASCII (no control
// byte, space or DEL), as a request target must.
func visibleASCII(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		// Eight bytes at a time: any byte under 0x21, or over 0x7e.
		x := binary.LittleEndian.Uint64(b)
		if ((x-lo8*0x21)&^x|(x+lo8)|x)&hi8 != 0 {
			return false
		}
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// validFieldValue reports whether a header value is free of control bytes
// other than tab (RFC 9110 section 5.5; net/http's rule too). Bytes from
// 0x80 up are allowed as obs-text.
func validFieldValue(b []byte) bool {
	if len(b) < 8 {
		return validFieldBytes(b)
	}
	// Eight bytes at a time, then the last eight (overlapping): any byte
	// under 0x20 or a DEL sends the eight to the byte loop (which allows
	// tabs).
	l := b[len(b)-8:]
	for ; len(b) >= 8; b = b[8:] {
		if !validFieldWord(b[:8]) {
			return false
		}
	}
	return validFieldWord(l)
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// isToken reports an RFC 9110 token: a method or a header name.
func isToken(b []byte) bool {
	t := &tokenBytes
	switch n := len(b); {
	case n >= 8:
		// Eight bytes at a time, then the last eight (overlapping).
		l := b[n-8:]
		for ; len(b) >= 8; b = b[8:] {
			if t[b[0]]&t[b[1]]&t[b[2]]&t[b[3]]&t[b[4]]&t[b[5]]&t[b[6]]&t[b[7]] == 0 {
				return false
			}
		}
		return t[l[0]]&t[l[1]]&t[l[2]]&t[l[3]]&t[l[4]]&t[l[5]]&t[l[6]]&t[l[7]] != 0
	case n >= 4:
		return t[b[0]]&t[b[1]]&t[b[2]]&t[b[3]]&t[b[n-4]]&t[b[n-3]]&t[b[n-2]]&t[b[n-1]] != 0
	case n == 0:
		return false
	}
	for _, c := range b {
		if t[c] == 0 {
			return false
		}
	}
	return true
}

// equalFold compares ASCII case-insensitively without allocating: the
// bytes are equal, or both letters of the same one. Eight bytes are
// compared at a time (four for names of four to seven bytes; the last
// word overlaps the one before it): foldWord.
func equalFold[T ~string | ~[]byte](b []byte, s T) bool {
	// The length check inlines; most names are told apart by it.
	return len(b) == len(s) && equalFoldSameLen(b, s)
}

// equalFoldSameLen is equalFold for b and s of the same length.
func equalFoldSameLen[T ~string | ~[]byte](b []byte, s T) bool {
	n := len(b)
	switch {
	case n >= 8:
		for i := 0; i+8 < n; i += 8 {
			if !foldWord(load64(b, i), load64(s, i)) {
				return false
			}
		}
		return foldWord(load64(b, n-8), load64(s, n-8))
	case n >= 4:
		return foldWord(load32(b, 0), load32(s, 0)) && foldWord(load32(b, n-4), load32(s, n-4))
	}
	for i := 0; i < n; i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || (x|0x20) < 'a' || (x|0x20) > 'z' {
			return false
		}
	}
	return true
}

// foldWord is equalFold for the bytes of two words: a byte of x equals
// the one of y, or y's is a letter and x's the same letter in either
// case. Bytes of y are letters where y|0x20 is from 'a' to 'z' without
// the high bit; those get 0x20 in m.
func foldWord(x, y uint64) bool {
	ly := y | lo8*0x20
	t := ly &^ hi8
	letters := (t + lo8*(0x80-'a')) &^ (t + lo8*(0x80-'z'-1)) &^ ly & hi8
	m := letters >> 2
	return x|m == y|m
}

// foldName is a header name of 4 to 24 bytes prepared for equalFold
// against it: its words (see equalFold) with the 0x20 bit set in its
// letters, and that bit as a mask, so that a comparison is a load, an OR
// and a compare a word. is(b) is equalFold(b, name).
type foldName struct {
	n          int
	w0, w1, w2 uint64 // the words at 0, at 8 (n > 16), and the last
	m0, m1, m2 uint64 // their letters' 0x20 bits
	short      bool   // n < 8: four-byte words at 0 and n-4
}

// newFoldName prepares name; it panics on a length foldName cannot
// take (a mistake in a package variable, found at start).
func newFoldName(name string) foldName {
	n := len(name)
	if n < 4 || n > 24 {
		panic(fmt.Sprintf("proxy: foldName %q: length %d not from 4 to 24", name, n))
	}
	word := func(y uint64) (w, m uint64) {
		ly := y | lo8*0x20
		t := ly &^ hi8
		m = ((t + lo8*(0x80-'a')) &^ (t + lo8*(0x80-'z'-1)) &^ ly & hi8) >> 2
		return y | m, m
	}
	f := foldName{n: n, short: n < 8}
	if f.short {
		f.w0, f.m0 = word(load32(name, 0))
		f.w2, f.m2 = word(load32(name, n-4))
		return f
	}
	f.w0, f.m0 = word(load64(name, 0))
	if n > 16 {
		f.w1, f.m1 = word(load64(name, 8))
	}
	f.w2, f.m2 = word(load64(name, n-8))
	return f
}

// is reports equalFold(b, the name). The length check inlines.
func (f *foldName) is(b []byte) bool { return len(b) == f.n && f.match(b) }

func (f *foldName) match(b []byte) bool {
	n := len(b)
	if f.short {
		return load32(b, 0)|f.m0 == f.w0 && load32(b, n-4)|f.m2 == f.w2
	}
	return load64(b, 0)|f.m0 == f.w0 && load64(b, n-8)|f.m2 == f.w2 && (n <= 16 || load64(b, 8)|f.m1 == f.w1)
}

// The names the head parsers and the request and answer writers look
// for on every message.
var (
	nameContentLength    = newFoldName("content-length")
	nameTransferEncoding = newFoldName("transfer-encoding")
	nameHost             = newFoldName("host")
	nameConnection       = newFoldName("connection")
	nameExpect           = newFoldName("expect")
	nameContentType      = newFoldName("content-type")
	nameTrailer          = newFoldName("trailer")
	nameCutoverPool      = newFoldName("x-cutover-pool")
	nameCutoverReplica   = newFoldName("x-cutover-replica")
	nameHops             = newFoldName(hopsHeader)
)

// load64 is the little-endian word of b[i:i+8].
func load64[T ~string | ~[]byte](b T, i int) uint64 {
	b = b[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// load32 is the little-endian word of b[i:i+4].
func load32[T ~string | ~[]byte](b T, i int) uint64 {
	b = b[i : i+4]
	return uint64(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
}

// parseContentLength parses a Content-Length value as net/http does:
// digits only (leading zeros allowed), at most 1<<63 - 1.
func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > math.MaxInt64 {
			return 0, false
		}
	}
	return int64(n), true
}

func internMethod(b []byte) string {
	switch string(b) {
	case http.MethodPost:
		return http.MethodPost
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	}
	return string(b)
}

func internPath(b []byte) string {
	switch string(b) {
	case "/v1/chat/completions":
		return "/v1/chat/completions"
	case "/v1/completions":
		return "/v1/completions"
	case "/v1/models":
		return "/v1/models"
	case "/v1/embeddings":
		return "/v1/embeddings"
	case "/health":
		return "/health"
	}
	return string(b)
}

// parseStatus parses a three-digit status code from 100 to 999 (net/http
// takes 000 to 099 too, which its server cannot write).
func parseStatus(b []byte) (int, bool) {
	if b[0] < '1' || b[0] > '9' || b[1] < '0' || b[1] > '9' || b[2] < '0' || b[2] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0'), true
}
