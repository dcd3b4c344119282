package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Differential fuzz targets for the head parsers (head.go) against
// net/http's readers, the reference: fasthttp's FuzzHeaderScanner checks
// its scanner the same way.

// cutHead returns the head at the start of b as the loop reads it: lines
// up to the first empty one (an input without one gets one, so that the
// fuzzer need not find it). Leading empty lines, which the loop's reader
// drops, are not heads: ok is false.
func cutHead(b []byte) (head []byte, ok bool) {
	if !bytes.Contains(b, []byte("\n\n")) && !bytes.Contains(b, []byte("\n\r\n")) {
		b = append(bytes.Clone(b), "\r\n\r\n"...)
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return nil, false
		}
		line := trimEOL(b[i : i+j+1])
		i += j + 1
		if len(line) == 0 {
			return b[:i], i > j+1
		}
	}
}

// netHTTPRequest reads a request head as net/http's server does:
// http.ReadRequest, then the server's own checks (conn.readRequest).
func netHTTPRequest(head []byte) (*http.Request, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, err
	}
	// http.ReadRequest drops the Host field: read the fields again, as
	// its reader does.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := tp.ReadLine(); err != nil {
		return nil, err
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	hosts, haveHost := mh["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "CONNECT" {
		return nil, errString("missing required Host header")
	}
	for k := range req.Header {
		if strings.ContainsAny(k, " \t") { // textproto lets these through; the server refuses them
			return nil, errString("invalid header name")
		}
	}
	return req, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// fieldsOf is a head's header fields as net/http's canonical map, with
// net/http's own edits: one Content-Length for several equal ones, and
// "Pragma: no-cache" implying "Cache-Control: no-cache".
func fieldsOf(head []byte, fields []hfield) http.Header {
	h := http.Header{}
	for _, f := range fields {
		k := http.CanonicalHeaderKey(string(head[f.ns:f.ne]))
		h[k] = append(h[k], string(head[f.vs:f.ve]))
	}
	if cl := h["Content-Length"]; len(cl) > 1 {
		h["Content-Length"] = cl[:1]
	}
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" && h["Cache-Control"] == nil {
		h["Cache-Control"] = []string{"no-cache"}
	}
	return h
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: g\r\n\r\n",
	"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: g:8000\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
	"POST /v1/a HTTP/1.1\nHost: g\nContent-Length: 02\nContent-Length: 02\n\n",
	"POST /v1/a HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\n",
	"POST /v1/a HTTP/1.1\r\nHost: g\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST /v1/a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
	"POST /v1/a HTTP/1.1\r\nHost: g\r\nX-A: a\r\n b\r\n\r\n",
	"POST /v1/a HTTP/1.1\r\n Host: g\r\n\r\n",
	"GET /v1/a%2Fb%zz HTTP/1.1\r\nHost: g\r\n\r\n",
	"GET /v1/a\rb HTTP/1.1\r\nHost: g\r\n\r\n",
	"GET /v1/\xff HTTP/1.1\r\nHost: g\r\n\r\n",
	"GET http://g/v1/a HTTP/1.1\r\nHost: g\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: g\r\n\r\n",
	"GET /v1/a HTTP/1.0\r\n\r\n",
	"POST /v1/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST /v1/a HTTP/1.0\nContent-Length: 2\ntransfer-encoding: identity\n\n",
	"POST /v1/a HTTP/1.0\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nHost: g\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nX-A : b\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nX-A: a\x00b\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nX-A: a\rb\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nX-A: \xc2\xa0a\xc2\xa0\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nConnection: keep-alive, close\r\nPragma: no-cache\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nConnection: close\xc2\xa0\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 9223372036854775807\r\n\r\n",
	"GET /v1/a HTTP/1.1\r\nHost: g\r\nExpect: 100-continue, x\r\n\r\n",
	"GET  /v1/a HTTP/1.1\r\nHost: g\r\n\r\n",
	"G\x01T /v1/a HTTP/1.1\r\nHost: g\r\n\r\n",
}

// FuzzRequestHead: what parseRequestHead accepts, net/http's server
// accepts with the same method, target, version, header fields and
// framing; what it refuses, net/http refuses, but for the heads it
// refuses on purpose (refusedOnPurpose), each recognised here. Handing the
// connection to net/http is consistent whatever net/http then says: it is
// the reference.
func FuzzRequestHead(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		head, ok := cutHead(b)
		if !ok {
			t.Skip()
		}
		var ph requestHead
		parseRequestHead(head, &ph)
		req, err := netHTTPRequest(head)
		why := ""
		if err == nil {
			why = requestRefusedOnPurpose(head, req)
		}
		switch {
		case why != "" && (ph.verdict != headBad || ph.status != http.StatusBadRequest || ph.reason == ""):
			t.Fatalf("parseRequestHead does not refuse %q with a reason (%s): verdict %d, status %d", head, why, ph.verdict, ph.status)
		case ph.verdict == headFallback:
			return
		case ph.verdict == headBad:
			if err == nil && why == "" {
				t.Fatalf("parseRequestHead refuses %q (%d), net/http accepts it", head, ph.status)
			}
			return
		}
		if err != nil {
			t.Fatalf("parseRequestHead accepts %q, net/http refuses it: %v", head, err)
		}
		r := ph.rawReq
		if req.Method != r.method || req.RequestURI != string(r.target) || req.Proto != "HTTP/1.1" || req.URL.Path != r.path {
			t.Fatalf("%q: net/http reads %s %s (path %q) %s; parseRequestHead %s %s (path %q)", head,
				req.Method, req.RequestURI, req.URL.Path, req.Proto, r.method, r.target, r.path)
		}
		got := fieldsOf(head, ph.fields)
		delete(got, "Host") // http.ReadRequest moves it to req.Host
		if !sameHeader(got, req.Header) {
			t.Fatalf("%q: header fields\nparseRequestHead %q\nnet/http         %q", head, got, req.Header)
		}
		if cl := max(r.contentLength, 0); req.ContentLength != cl || req.TransferEncoding != nil || req.Close != r.close {
			t.Fatalf("%q: framing: net/http length %d, coding %q, close %v; parseRequestHead length %d, close %v", head,
				req.ContentLength, req.TransferEncoding, req.Close, cl, r.close)
		}
		if !plainHost([]byte(req.Host)) { // so net/http's ValidHostHeader holds
			t.Fatalf("%q: Host %q accepted", head, req.Host)
		}
	})
}

// requestRefusedOnPurpose says which of parseRequestHead's deliberate
// refusals head, which net/http's server accepts as req, falls under (""
// for none). The one there is:
//
//   - Transfer-Encoding in an HTTP/1.0 request: net/http ignores the
//     field (Go issue 12785) and reads the body by Content-Length, or as
//     empty, so a replica would get another request than the client sent;
//     RFC 9112 section 6.1 calls the framing faulty, nginx answers 400.
//     Both serving paths answer 400 and close (fallbackHandler for
//     net/http's).
func requestRefusedOnPurpose(head []byte, req *http.Request) string {
	if req.ProtoMajor != 1 || req.ProtoMinor != 0 {
		return ""
	}
	// net/http deletes the field from req.Header: read the fields again.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := tp.ReadLine(); err != nil {
		return ""
	}
	if mh, err := tp.ReadMIMEHeader(); err == nil && mh["Transfer-Encoding"] != nil {
		return "Transfer-Encoding in HTTP/1.0"
	}
	return ""
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 099 Low\r\n\r\n",
	"HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nConnection: keep-alive\r\n\r\n",
	"HTTP/1.1 200 OK\nPragma: no-cache\nContent-Length: 0\n\n",
	"HTTP/2.0 200 OK\r\n\r\n",
	"HTTP/1.x 200 OK\r\n\r\n",
}

// FuzzResponseHead: what parseResponseHead accepts, http.ReadResponse
// accepts with the same status, header fields and framing; what it
// refuses, net/http refuses too, but for the few heads it refuses on
// purpose (see parseResponseHead), each recognised here.
func FuzzResponseHead(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, toHEAD bool) {
		head, ok := cutHead(b)
		if !ok {
			t.Skip()
		}
		method := http.MethodPost
		if toHEAD {
			method = http.MethodHead
		}
		var rr rawResp
		perr := parseResponseHead(head, &rr)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: method})
		switch {
		case perr != nil && err != nil:
			return
		case perr == nil && err != nil:
			t.Fatalf("parseResponseHead accepts %q, net/http refuses it: %v", head, err)
		case perr != nil:
			if why := refusedOnPurpose(head, resp); why == "" {
				t.Fatalf("parseResponseHead refuses %q (%v), net/http accepts it", head, perr)
			}
			return
		}
		if resp.StatusCode != rr.status {
			t.Fatalf("%q: status %d, net/http %d", head, rr.status, resp.StatusCode)
		}
		got := fieldsOf(head, rr.fields)
		if rr.chunked {
			delete(got, "Trailer") // net/http reads it into resp.Trailer
			if !toHEAD && rr.status >= 200 && rr.status != 204 && rr.status != 304 {
				delete(got, "Content-Length") // Transfer-Encoding wins
			}
		}
		if rr.conn.close && resp.ProtoAtLeast(1, 1) {
			delete(got, "Connection") // net/http drops it then (not from an HTTP/1.0 answer)
		}
		delete(got, "Transfer-Encoding") // net/http reads it into resp.TransferEncoding
		if !sameHeader(got, resp.Header) {
			t.Fatalf("%q: header fields\nparseResponseHead %q\nnet/http          %q", head, got, resp.Header)
		}
		if rr.status < 200 {
			return // the loop reads on to the final answer
		}
		rr.frame(method)
		switch {
		case rr.bodiless:
		case rr.chunked:
			if resp.ContentLength != -1 || !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
				t.Fatalf("%q: chunked; net/http length %d, coding %q", head, resp.ContentLength, resp.TransferEncoding)
			}
		case rr.closeDelim:
			if resp.ContentLength != -1 || resp.TransferEncoding != nil || !resp.Close {
				t.Fatalf("%q: until close; net/http length %d, coding %q, close %v", head, resp.ContentLength, resp.TransferEncoding, resp.Close)
			}
		default:
			if resp.ContentLength != rr.contentLength || resp.TransferEncoding != nil {
				t.Fatalf("%q: length %d; net/http length %d, coding %q", head, rr.contentLength, resp.ContentLength, resp.TransferEncoding)
			}
		}
		if resp.Close != rr.close {
			t.Fatalf("%q: close %v, net/http %v", head, rr.close, resp.Close)
		}
	})
}

// refusedOnPurpose says which of parseResponseHead's deliberate refusals
// head falls under ("" for none): net/http takes these heads.
func refusedOnPurpose(head []byte, resp *http.Response) string {
	line, rest := nextLine(head)
	switch {
	case resp.ProtoMajor != 1:
		return "HTTP version other than 1.x"
	case resp.StatusCode < 100:
		return "status under 100"
	case len(line) > 9 && line[9] == ' ':
		return "more than one space before the status code"
	case len(line) > 12 && hasCTLButTab(line[12:]):
		return "control byte in the reason phrase"
	case resp.ProtoMinor == 0 && bytes.Contains(bytes.ToLower(head), []byte("\ntransfer-encoding:")):
		return "Transfer-Encoding in HTTP/1.0"
	}
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			return ""
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "obsolete line folding"
		}
		if name, _, _ := bytes.Cut(line, []byte(":")); !isToken(name) {
			return "header name not a token"
		}
	}
}

// TestConnTokens: the set of names Connection fields list, as net/http's
// ReverseProxy reads them: comma-separated, blanks (SP, HTAB) trimmed,
// case-insensitive, "close" and "keep-alive" too; past the few names it
// compares one by one as well.
func TestConnTokens(t *testing.T) {
	var s connTokens
	s.add([]byte(" X-A ,\tclose,, keep-alive"))
	s.addString("x-b")
	for _, name := range []string{"x-a", "X-A", "Close", "KEEP-ALIVE", "X-B"} {
		if !s.hasString(name) || !s.has([]byte(name)) {
			t.Errorf("%q not found", name)
		}
	}
	for _, name := range []string{"X", "x-a ", "\xc2\xa0x-a", "X-C"} {
		if s.hasString(name) {
			t.Errorf("%q found", name)
		}
	}
	if !s.close || !s.keepAlive {
		t.Errorf("close %v, keep-alive %v; want both", s.close, s.keepAlive)
	}
	for i := range 3 * maxFewTokens {
		s.addString("n" + strconv.Itoa(i) + ",N0")
	}
	if !s.overflow || !s.hasString("N17") || !s.hasString("x-a") || s.hasString("n99") {
		t.Errorf("overflowed %v: names after it misread", s.overflow)
	}
}
