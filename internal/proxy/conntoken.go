package proxy

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

// maxFewTokens is how many distinct names connTokens compares one by one
// before it switches to a map. Real clients list one or two, if any.
const maxFewTokens = 8

// add records the tokens of one Connection field value.
func (s *connTokens) add(v []byte) { addConnTokens(s, v) }

// addString records the tokens of one Connection field value.
func (s *connTokens) addString(v string) { addConnTokens(s, v) }

// has reports whether the Connection fields list the header name.
func (s *connTokens) has(name []byte) bool { return hasConnName(s, name) }

// hasString reports whether the Connection fields list the header name.
func (s *connTokens) hasString(name string) bool { return hasConnName(s, name) }

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
