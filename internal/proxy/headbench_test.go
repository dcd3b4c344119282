package proxy

import "testing"

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
