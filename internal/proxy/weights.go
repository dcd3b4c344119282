package proxy

import (
	"crypto/subtle"
	"net/http"
	"slices"

	"github.com/cutover-dev/cutover/internal/route"
)

// pickEntry returns the pool of table t that serves a new request with
// headers hdr: the live pool, or during a canary the pool t.Pick draws
// (by the affinity header's value when t names one).
func pickEntry(t *route.Table, hdr http.Header) *route.Entry {
	if t.Canary == nil {
		return t.Live
	}
	key := ""
	if t.AffinityHeader != "" {
		key = hdr.Get(t.AffinityHeader)
	}
	return t.Pick(key)
}

// pickPool returns the pool of table t that serves r: the pool r names with
// the pool header and its token, else pickEntry's. It strips the pool
// header and its token header from r.
func (h *Handler) pickPool(t *route.Table, r *http.Request) *route.Entry {
	if hn := h.opts.PoolHeader; hn != "" {
		name, token := headerValue(r.Header, hn), headerValue(r.Header, hn+"-Token")
		delete(r.Header, hn)
		delete(r.Header, hn+"-Token")
		if e := h.namedEntry(t, name, token); e != nil {
			return e
		}
	}
	return pickEntry(t, r.Header)
}

// namedEntry returns the pool of t called name when token is the pool
// header's token (compared in constant time), nil otherwise.
func (h *Handler) namedEntry(t *route.Table, name, token string) *route.Entry {
	if name == "" || h.opts.PoolHeaderToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(h.opts.PoolHeaderToken)) != 1 {
		return nil
	}
	return t.Pools[name]
}

// pickEntry is Handler.pickPool for the request in sc: it drops the pool
// header and its token header from sc.fields, so they are not forwarded.
func (sc *srvConn) pickEntry(t *route.Table) *route.Entry {
	if hn := sc.h.opts.PoolHeader; hn != "" {
		var name, token string
		sc.fields = slices.DeleteFunc(sc.fields, func(f hfield) bool {
			n := sc.head[f.ns:f.ne]
			switch {
			case equalFold(n, hn):
				name = string(sc.head[f.vs:f.ve])
			case len(n) == len(hn)+6 && equalFold(n[:len(hn)], hn) && equalFold(n[len(hn):], "-Token"):
				token = string(sc.head[f.vs:f.ve])
			default:
				return false
			}
			return true
		})
		if e := sc.h.namedEntry(t, name, token); e != nil {
			return e
		}
	}
	if t.Canary == nil {
		return t.Live
	}
	key := ""
	if t.AffinityHeader != "" {
		for _, f := range sc.fields {
			if equalFold(sc.head[f.ns:f.ne], t.AffinityHeader) {
				key = string(sc.head[f.vs:f.ve])
				break
			}
		}
	}
	return t.Pick(key)
}
