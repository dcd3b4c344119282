package proxy

import (
	"bytes"
	"strings"
	"testing"
)

// TestChunkParser feeds valid chunked bodies split at every point (and a
// byte at a time): the data comes out whole, every byte up to the end is
// consumed and none after it, and done is set exactly at the end.
func TestChunkParser(t *testing.T) {
	valid := []struct {
		name, in, data string
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"empty body", "0\r\n\r\n", ""},
		{"several chunks", "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n", "hello world"},
		{"extensions", "5;name=value\r\nhello\r\n6;a;b=\"q;x\"\r\n world\r\n0;last\r\n\r\n", "hello world"},
		{"whitespace before an extension", "5 ;x\r\nhello\r\n0\r\n\r\n", "hello"},
		{"trailers", "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: two\r\n\r\n", "abc"},
		{"bare LF", "3\nabc\n0\n\n", "abc"},
		{"bare LF with trailer", "3\nabc\n0\nX-T: 1\n\n", "abc"},
		{"upper-case hex and leading zeros", "000A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"data holding CRLF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
		{"SSE events", "b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n", "data: one\n\ndata: two\n\n"},
	}
	const next = "HTTP/1.1 200 OK\r\n" // the replica's next answer: not the body's
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.in); i++ {
				var p chunkParser
				var got []byte
				data := func(b []byte) { got = append(got, b...) }
				n, err := p.feed([]byte(tc.in[:i]), data)
				if err != nil || n != i {
					t.Fatalf("split at %d: first part consumed %d of %d: %v", i, n, i, err)
				}
				if p.done != (i == len(tc.in)) {
					t.Fatalf("split at %d: done = %v after %d of %d bytes", i, p.done, i, len(tc.in))
				}
				n, err = p.feed([]byte(tc.in[i:]+next), data)
				if err != nil || n != len(tc.in)-i || !p.done {
					t.Fatalf("split at %d: second part consumed %d, want %d, done %v: %v", i, n, len(tc.in)-i, p.done, err)
				}
				if string(got) != tc.data {
					t.Fatalf("split at %d: data %q, want %q", i, got, tc.data)
				}
			}
			var p chunkParser
			var got []byte
			for i := 0; i < len(tc.in); i++ {
				if p.done {
					t.Fatalf("byte by byte: done after %d of %d bytes", i, len(tc.in))
				}
				if n, err := p.feed([]byte{tc.in[i]}, func(b []byte) { got = append(got, b...) }); err != nil || n != 1 {
					t.Fatalf("byte by byte: byte %d: consumed %d: %v", i, n, err)
				}
			}
			if !p.done || string(got) != tc.data {
				t.Fatalf("byte by byte: done %v, data %q", p.done, got)
			}
		})
	}

	invalid := []struct {
		name, in string
	}{
		{"not hex", "zz\r\nbad\r\n0\r\n\r\n"},
		{"negative size", "-5\r\nhello\r\n0\r\n\r\n"},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"missing size", "\r\nhello\r\n0\r\n\r\n"},
		{"extension without a size", ";x\r\nhello\r\n0\r\n\r\n"},
		{"bare LF without a size", "\nhello\r\n0\r\n\r\n"},
		{"data longer than its size", "5\r\nhello!\r\n0\r\n\r\n"},
		{"CR then garbage after data", "5\r\nhello\rX\n0\r\n\r\n"},
		{"size too large", "10000000000000000\r\n"},
		{"extension too long", "1;" + strings.Repeat("e", maxChunkLine+1) + "\r\na\r\n0\r\n\r\n"},
		{"trailer line too long", "1\r\na\r\n0\r\nX-T: " + strings.Repeat("t", maxChunkLine+1) + "\r\n\r\n"},
	}
	for _, tc := range invalid {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			for _, i := range splitPoints(len(tc.in)) {
				var p chunkParser
				nop := func([]byte) {}
				_, err := p.feed([]byte(tc.in[:i]), nop)
				if err == nil {
					_, err = p.feed([]byte(tc.in[i:]), nop)
				}
				if err == nil {
					t.Fatalf("split at %d: no error (done %v)", i, p.done)
				}
			}
		})
	}
}

// splitPoints is every split of an n-byte input, or for a long one (the
// line-length limits) the splits around its ends and middle.
func splitPoints(n int) []int {
	if n <= 256 {
		pts := make([]int, n+1)
		for i := range pts {
			pts[i] = i
		}
		return pts
	}
	return []int{0, 1, 2, 3, n / 2, n - 3, n - 2, n - 1, n}
}

// FuzzChunkParser: feeding a body whole or a byte at a time gives the
// same verdict, the same data and the same end.
func FuzzChunkParser(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "3\nabc\n0\nX: y\n\n", "5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\nHTTP/1.1", "zz\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var whole chunkParser
		var wd []byte
		wn, werr := whole.feed(in, func(b []byte) { wd = append(wd, b...) })
		var bytewise chunkParser
		var bd []byte
		bn := 0
		var berr error
		for i := 0; i < len(in) && !bytewise.done; i++ {
			n, err := bytewise.feed(in[i:i+1], func(b []byte) { bd = append(bd, b...) })
			if err != nil {
				berr = err
				break
			}
			bn += n
		}
		if (werr == nil) != (berr == nil) {
			t.Fatalf("whole: %v; byte by byte: %v", werr, berr)
		}
		if werr != nil {
			return
		}
		if wn != bn || whole.done != bytewise.done || !bytes.Equal(wd, bd) {
			t.Fatalf("whole: %d bytes, done %v, data %q; byte by byte: %d, %v, %q", wn, whole.done, wd, bn, bytewise.done, bd)
		}
		if wn > len(in) || (!whole.done && wn != len(in)) {
			t.Fatalf("consumed %d of %d bytes, done %v", wn, len(in), whole.done)
		}
	})
}
