package proxy

import (
	"bufio"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
)

// TestChunkedBodyAgreesWithGo: chunkedBody decodes what Go's chunked
// reader decodes, read a byte at a time or in large reads, leaves the
// bytes after the body unread, and reports a cut or malformed body.
func TestChunkedBodyAgreesWithGo(t *testing.T) {
	tests := []struct {
		name, wire string
		bad        bool
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\nNEXT", false},
		{"several with extension", "3;x=1\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\nNEXT", false},
		{"trailers", "2\r\nhi\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\nNEXT", false},
		{"empty", "0\r\n\r\nNEXT", false},
		{"cut in data", "5\r\nhel", true},
		{"cut before last chunk", "5\r\nhello\r\n", true},
		{"bad size", "zz\r\nhello\r\n0\r\n\r\n", true},
		{"data longer than size", "2\r\nhello\r\n0\r\n\r\n", true},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				want, wantErr := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(tt.wire)))
				br := bufio.NewReader(strings.NewReader(tt.wire))
				b := &chunkedBody{br: br}
				var got []byte
				buf := make([]byte, size)
				var err error
				for range len(tt.wire) + 2 { // a read takes at least a byte, or ends
					var n int
					n, err = b.Read(buf)
					got = append(got, buf[:n]...)
					if err != nil {
						break
					}
				}
				if tt.bad {
					if err == io.EOF || wantErr == nil {
						t.Fatalf("read %q, then %v (Go's reader: %v); want an error", got, err, wantErr)
					}
					return
				}
				if err != io.EOF || wantErr != nil {
					t.Fatalf("ended with %v (Go's reader: %v), want io.EOF", err, wantErr)
				}
				if string(got) != string(want) {
					t.Fatalf("read %q, Go's reader %q", got, want)
				}
				if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
					t.Fatalf("left %q after the body, want %q", rest, "NEXT")
				}
			})
		}
	}
}
