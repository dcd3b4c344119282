package proxy

// affinityKey returns the bytes of JSON object body b that field names
// for hash affinity, nil when b has none: for "user" the top-level user
// string (between its quotes); for "first_message" the content (string
// or parts, as sent) of the first element of the top-level messages
// array whose role is "user". It decodes nothing and allocates nothing.
func affinityKey(b []byte, field string) []byte {
	switch field {
	case "user":
		vs, ve := member(b, skipWS(b, 0), "user")
		if ve-vs > 2 && b[vs] == '"' {
			return b[vs+1 : ve-1]
		}
	case "first_message":
		vs, ve := member(b, skipWS(b, 0), "messages")
		if ve-vs < 2 || b[vs] != '[' {
			return nil
		}
		for i := skipWS(b, vs+1); i < ve && b[i] == '{'; {
			end, ok := skipValue(b, i)
			if !ok {
				return nil
			}
			if rs, re := member(b[:end], i, "role"); string(b[rs:re]) == `"user"` {
				if cs, ce := member(b[:end], i, "content"); ce > cs && string(b[cs:ce]) != "null" {
					return b[cs:ce]
				}
				return nil
			}
			i = skipWS(b, end)
			if i >= ve || b[i] != ',' {
				return nil
			}
			i = skipWS(b, i+1)
		}
	}
	return nil
}

// member returns the offsets of the value of member name (the last one
// when repeated) of the JSON object starting at b[i], 0, 0 when it has
// none or is not a well-formed object. Keys are compared as written.
func member(b []byte, i int, name string) (vs, ve int) {
	if i >= len(b) || b[i] != '{' {
		return 0, 0
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0, 0
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, 0
		}
		ke, _, ok := scanString(b, i)
		if !ok {
			return 0, 0
		}
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, 0
		}
		s := skipWS(b, i+1)
		e, ok := skipValue(b, s)
		if !ok {
			return 0, 0
		}
		if string(key) == name {
			vs, ve = s, e
		}
		i = skipWS(b, e)
		if i >= len(b) {
			return 0, 0
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return vs, ve
		default:
			return 0, 0
		}
	}
}
