package proxy

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// The heads of a small chat completion through the gateway, as Go's
// client and a replica send them.
var (
	benchRequestHead  = []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 80\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n")
	benchResponseHead = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Sun, 06 Dec 2026 21:11:45 GMT\r\nContent-Length: 312\r\n\r\n")
)

func BenchmarkParseRequestHead(b *testing.B) {
	var h requestHead
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		parseRequestHead(benchRequestHead, &h)
	}
	if h.verdict != headOK {
		b.Fatalf("verdict %d", h.verdict)
	}
}

func BenchmarkParseResponseHead(b *testing.B) {
	var rr rawResp
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := parseResponseHead(benchResponseHead, &rr); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadRequestBufferedSameAsLines: a head whole in the reader's buffer
// (readRequest's fast path) reads as the line by line read reads it (one
// byte per read keeps the buffer from ever holding it whole): the same
// verdict, head, fields, request and bytes left, within the same limits.
func TestReadRequestBufferedSameAsLines(t *testing.T) {
	heads := append([]string{
		"\r\nGET / HTTP/1.1\r\nHost: g\r\n\r\n",
		"GET /%7e HTTP/1.1\r\nHost: g\r\nA: 1\r\nB: 2\r\n\r\nGET / HTTP/1.1\r\n",
		"GET / HTTP/1.1\r\nHost: g\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: g\r\nX-Long: " + strings.Repeat("v", 90) + "\r\n\r\nbody",
		"GET / HTTP/1.1\r\nHost: g\r\n",
	}, requestSeeds...)
	limits := [][2]int{{0, 0}, {0, 2}, {60, 0}} // MaxHeaderBytes, MaxHeaderFields
	for _, h := range heads {
		for _, lim := range limits {
			read := func(r io.Reader) (sc *srvConn, verdict, status int, rest string) {
				sc = &srvConn{s: &Server{MaxHeaderBytes: lim[0], MaxHeaderFields: lim[1]}, br: bufio.NewReaderSize(r, 4096)}
				if _, err := sc.br.Peek(1); err != nil {
					t.Fatal(err)
				}
				verdict, status = sc.readRequest()
				b, _ := io.ReadAll(sc.br)
				return sc, verdict, status, string(b)
			}
			a, va, sa, ra := read(strings.NewReader(h))
			b, vb, sb, rb := read(iotest.OneByteReader(strings.NewReader(h)))
			if va != vb || sa != sb {
				t.Errorf("%q (limits %v): buffered %d %d, line by line %d %d", h, lim, va, sa, vb, sb)
				continue
			}
			if va != headOK {
				continue
			}
			if string(a.head) != string(b.head) || ra != rb || !slices.Equal(a.fields, b.fields) ||
				a.req.method != b.req.method || string(a.req.target) != string(b.req.target) || a.req.path != b.req.path ||
				a.req.contentLength != b.req.contentLength || a.req.close != b.req.close || a.req.continue100 != b.req.continue100 {
				t.Errorf("%q (limits %v): buffered %q %+v rest %q; line by line %q %+v rest %q", h, lim, a.head, a.req, ra, b.head, b.req, rb)
			}
		}
	}
}

// TestParseResponseHeadEnd: with the body (or the next answer) after it
// in the buffer, a response head parses as it does alone, and its end is
// found where it is.
func TestParseResponseHeadEnd(t *testing.T) {
	for _, s := range responseSeeds {
		head, ok := cutHead([]byte(s))
		if !ok {
			continue
		}
		var alone, buffered rawResp
		aerr := parseResponseHead(head, &alone)
		end, berr := parseResponseHeadEnd(append(bytes.Clone(head), "HTTP/1.1 200 OK\r\n\r\nbody"...), &buffered)
		if (aerr == nil) != (berr == nil) {
			t.Errorf("%q: alone %v, buffered %v", head, aerr, berr)
			continue
		}
		if aerr != nil {
			continue
		}
		if end != len(head) || alone.status != buffered.status || string(alone.reason) != string(buffered.reason) ||
			alone.contentLength != buffered.contentLength || alone.chunked != buffered.chunked || alone.close != buffered.close ||
			!slices.Equal(alone.fields, buffered.fields) {
			t.Errorf("%q: alone %+v; buffered (end %d) %+v", head, alone, end, buffered)
		}
	}
}
