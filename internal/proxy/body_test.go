package proxy

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestBufferBody: bodies of every length and arrival pattern come out
// whole, limits answer with their codes, and every byte taken from the
// budget is given back.
func TestBufferBody(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 20<<10) // 320 KiB: every chunk size
	cases := []struct {
		name     string
		src      string
		declared int64
		read     func(io.Reader) io.Reader
		max      int64 // MaxBodyBytes; 0: default
		budget   int64 // MaxBufferedBytes; 0: default
		code     string
	}{
		{name: "small declared", src: "{}", declared: 2},
		{name: "small declared a byte at a time", src: big[:1000], declared: 1000, read: iotest.OneByteReader},
		{name: "large declared", src: big, declared: int64(len(big))},
		{name: "large declared in halves", src: big, declared: int64(len(big)), read: iotest.HalfReader},
		{name: "large declared with data errors", src: big, declared: int64(len(big)), read: iotest.DataErrReader},
		{name: "unknown length", src: big, declared: -1},
		{name: "unknown length a byte at a time", src: big[:5000], declared: -1, read: iotest.OneByteReader},
		{name: "unknown length, empty", src: "", declared: -1},
		{name: "unknown length at the limit", src: big[:100], declared: -1, max: 100},
		{name: "unknown length past the limit", src: big[:101], declared: -1, max: 100, code: "request_too_large"},
		{name: "declared past the limit", src: big[:101], declared: 101, max: 100, code: "request_too_large"},
		{name: "small body cut short", src: "{", declared: 2, code: "bad_body"},
		{name: "large body cut short", src: big[:70000], declared: 80000, code: "bad_body"},
		{name: "small body over the budget", src: big[:1000], declared: 1000, budget: 999, code: "overloaded"},
		{name: "large body over the budget", src: big, declared: int64(len(big)), budget: 100 << 10, code: "overloaded"},
		{name: "unknown length over the budget", src: big, declared: -1, budget: 100 << 10, code: "overloaded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Options{Logger: quiet, MaxBodyBytes: tc.max, MaxBufferedBytes: tc.budget})
			var r io.Reader = strings.NewReader(tc.src)
			if tc.read != nil {
				r = tc.read(r)
			}
			var small []byte
			body, held, aerr := h.bufferBody(r, tc.declared, &small)
			if tc.code != "" {
				if aerr == nil || aerr.code != tc.code {
					t.Fatalf("got %v, want %s", aerr, tc.code)
				}
				if aerr.code == "overloaded" && aerr.retryAfter == "" {
					t.Error("an overloaded answer without Retry-After")
				}
			} else {
				if aerr != nil {
					t.Fatal(aerr)
				}
				if string(body) != tc.src || held != int64(len(tc.src)) {
					t.Fatalf("got %d bytes (held %d), want %d", len(body), held, len(tc.src))
				}
				// At most the room for a model name rewritten in place.
				if int64(cap(body)) > held+rewriteRoom {
					t.Errorf("the body keeps %d bytes for %d", cap(body), held)
				}
			}
			h.buffered.give(held)
			if used := h.buffered.used.Load(); used != 0 {
				t.Errorf("%d bytes still counted", used)
			}
		})
	}
}
