package proxy

import (
	"math/rand"
	"testing"
)

// refEqualFold is equalFold as it was, byte by byte: the reference for
// the word-at-a-time one.
func refEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
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

// TestEqualFoldLikeBytes checks equalFold against the byte loop: every
// pair of bytes at the first, a middle and the last position of names of
// every length up to 24 (the words' edges and their overlap), on a
// mixed-case base, and random names from a small alphabet where letters
// of both cases, their neighbours across 0x20 and high bytes meet.
func TestEqualFoldLikeBytes(t *testing.T) {
	const base = "Content-Length-X-Forwarded"
	for n := 0; n <= 24; n++ {
		for _, p := range []int{0, n / 2, n - 1} {
			if p < 0 || p >= n {
				continue
			}
			b := []byte(base[:n])
			s := []byte(base[:n])
			for x := 0; x < 256; x++ {
				for y := 0; y < 256; y++ {
					b[p], s[p] = byte(x), byte(y)
					want := refEqualFold(b, string(s))
					if got := equalFold(b, string(s)); got != want {
						t.Fatalf("equalFold(%q, %q) = %v, want %v", b, s, got, want)
					}
					if got := equalFold(b, s); got != want {
						t.Fatalf("equalFold(%q, []byte %q) = %v, want %v", b, s, got, want)
					}
				}
			}
		}
	}
	alphabet := []byte("aAzZ@[`{-\r\x00\x7f\x80\xc1\xe1\xfa\x9a01 ")
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200000; i++ {
		n := rng.Intn(20)
		b, s := make([]byte, n), make([]byte, n)
		for j := range b {
			b[j] = alphabet[rng.Intn(len(alphabet))]
			s[j] = b[j]
			switch rng.Intn(4) {
			case 0:
				s[j] ^= 0x20
			case 1:
				s[j] = alphabet[rng.Intn(len(alphabet))]
			}
		}
		if got, want := equalFold(b, string(s)), refEqualFold(b, string(s)); got != want {
			t.Fatalf("equalFold(%q, %q) = %v, want %v", b, s, got, want)
		}
	}
}

// TestFoldNameLikeEqualFold checks foldName.is against the byte loop:
// names of every length it takes, any byte of the name against any byte
// of the compared one at the first, a middle, the ninth and the last
// position, the rest the same or of the other case; and the package's
// names against their spellings.
func TestFoldNameLikeEqualFold(t *testing.T) {
	const base = "Content-Length-X-Forwarded"
	for n := 4; n <= 24; n++ {
		for _, p := range []int{0, n / 2, 8, n - 1} {
			if p >= n {
				continue
			}
			for y := 0; y < 256; y++ {
				name := []byte(base[:n])
				name[p] = byte(y)
				f := newFoldName(string(name))
				for _, rest := range []string{base[:n], flipCase(base[:n])} {
					b := []byte(rest)
					for x := 0; x < 256; x++ {
						b[p] = byte(x)
						if got, want := f.is(b), refEqualFold(b, string(name)); got != want {
							t.Fatalf("foldName(%q).is(%q) = %v, want %v", name, b, got, want)
						}
					}
					if f.is(b[:n-1]) || f.is(append(b, 'x')) {
						t.Fatalf("foldName(%q) takes a name of another length", name)
					}
				}
			}
		}
	}
	for _, c := range []struct {
		f    foldName
		name string
	}{
		{nameContentLength, "Content-Length"}, {nameTransferEncoding, "TRANSFER-ENCODING"},
		{nameHost, "hOST"}, {nameConnection, "Connection"}, {nameExpect, "Expect"},
		{nameContentType, "content-TYPE"}, {nameTrailer, "Trailer"},
		{nameCutoverPool, "X-Cutover-Pool"}, {nameCutoverReplica, "X-Cutover-Replica"}, {nameHops, "x-cutover-HOPS"},
	} {
		if !c.f.is([]byte(c.name)) {
			t.Errorf("%q not matched", c.name)
		}
		b := []byte(c.name)
		b[len(b)-1] ^= 0x40
		if c.f.is(b) {
			t.Errorf("%q matched", b)
		}
	}
}

func flipCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c|0x20 >= 'a' && c|0x20 <= 'z' {
			b[i] ^= 0x20
		}
	}
	return string(b)
}

// TestHopByHopLengths checks that the lengths looked at first let every
// hop-by-hop and client forwarding name through, in any case, and
// nothing of other lengths.
func TestHopByHopLengths(t *testing.T) {
	hop := []string{"Te", "Trailer", "Upgrade", "Connection", "Keep-Alive", "Proxy-Connection",
		"Transfer-Encoding", "Proxy-Authenticate", "Proxy-Authorization"}
	fwd := []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}
	for _, c := range []struct {
		names []string
		is    func([]byte) bool
	}{{hop, hopByHop}, {fwd, clientForwarded}} {
		for _, n := range c.names {
			for _, v := range []string{n, flipCase(n)} {
				if !c.is([]byte(v)) {
					t.Errorf("%q not reported", v)
				}
			}
		}
		for n := 0; n < 80; n++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = 'a'
			}
			if c.is(b) {
				t.Errorf("%q reported", b)
			}
		}
	}
}
