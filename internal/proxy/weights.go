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
// byBody reports that the pick is provisional: the table hashes a body
// field (see rePick) and the request has no affinity header value.
func pickEntry(t *route.Table, hdr http.Header) (e *route.Entry, byBody bool) {
	if t.Canary == nil {
		return t.Live, false
	}
	key := ""
	if t.AffinityHeader != "" {
		key = hdr.Get(t.AffinityHeader)
	}
	return t.Pick(key), key == "" && len(t.AffinityHash) > 0
}

// rePick returns the pool of table t for a request with body when its
// first pick was provisional: the pool the hash of the first of
// t.AffinityHash's fields present in body picks, e (the random pick)
// when none is.
func rePick(t *route.Table, e *route.Entry, body []byte) *route.Entry {
	for _, f := range t.AffinityHash {
		if k := affinityKey(body, f); len(k) > 0 {
			return t.PickWith(route.KeyHashBytes(k))
		}
	}
	return e
}

// pickPool returns the pool of table t that serves r: the pool r names with
// the pool header and its token, else pickEntry's. It strips the pool
// header and its token header from r. byBody is pickEntry's.
func (h *Handler) pickPool(t *route.Table, r *http.Request) (*route.Entry, bool) {
	if hn := h.opts.PoolHeader; hn != "" {
		name, token := headerValue(r.Header, hn), headerValue(r.Header, hn+"-Token")
		delete(r.Header, hn)
		delete(r.Header, hn+"-Token")
		if e := h.namedEntry(t, name, token); e != nil {
			return e, false
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
	e := t.Pools[name]
	if e != nil && e.Sleeping != nil {
		return e.Sleeping // asleep: 503 no_healthy_replica, never a sleeping replica
	}
	return e
}

// pickEntry is Handler.pickPool for the request in sc: it drops the pool
// header and its token header from sc.fields, so they are not forwarded.
// byBody is as pickEntry's.
func (sc *srvConn) pickEntry(t *route.Table) (e *route.Entry, byBody bool) {
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
			return e, false
		}
	}
	if t.Canary == nil {
		return t.Live, false
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
	return t.Pick(key), key == "" && len(t.AffinityHash) > 0
}
