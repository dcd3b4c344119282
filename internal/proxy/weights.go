package proxy

import (
	"crypto/subtle"
	"net/http"
	"slices"

	"github.com/cutover-dev/cutover/internal/route"
)

// pickKind says how a request's pool was chosen.
type pickKind uint8

const (
	// pickFixed: the only pool there is (no canary), or the one the
	// request names (the pool header and its token, the preview
	// listener).
	pickFixed pickKind = iota
	// pickDrawn: the canary's weights drew it (by the affinity header's
	// value when the table names one). A request whose model names the
	// other pool's model id goes there instead (see applyModelName).
	pickDrawn
	// pickByBody: drawn, and provisional: the table hashes a body field
	// (see rePick) and the request has no affinity header value.
	pickByBody
)

// drawnKind is pickDrawn, or pickByBody when the table hashes a body
// field and the request had no affinity key.
func drawnKind(t *route.Table, key string) pickKind {
	if key == "" && len(t.AffinityHash) > 0 {
		return pickByBody
	}
	return pickDrawn
}

// pickEntry returns the pool of table t that serves a new request with
// headers hdr: the live pool, or during a canary the pool t.Pick draws
// (by the affinity header's value when t names one), and how.
func pickEntry(t *route.Table, hdr http.Header) (e *route.Entry, kind pickKind) {
	if t.Canary == nil {
		return t.Live, pickFixed
	}
	key := ""
	if t.AffinityHeader != "" {
		key = hdr.Get(t.AffinityHeader)
	}
	return t.Pick(key), drawnKind(t, key)
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
// header and its token header from r. The kind is pickEntry's.
func (h *Handler) pickPool(t *route.Table, r *http.Request) (*route.Entry, pickKind) {
	if hn := h.opts.PoolHeader; hn != "" {
		name, token := headerValue(r.Header, hn), headerValue(r.Header, hn+"-Token")
		delete(r.Header, hn)
		delete(r.Header, hn+"-Token")
		if e := h.namedEntry(t, name, token); e != nil {
			return e, pickFixed
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
// The kind is as pickEntry's.
func (sc *srvConn) pickEntry(t *route.Table) (e *route.Entry, kind pickKind) {
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
			return e, pickFixed
		}
	}
	if t.Canary == nil {
		return t.Live, pickFixed
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
	return t.Pick(key), drawnKind(t, key)
}
