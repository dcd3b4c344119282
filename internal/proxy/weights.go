package proxy

import (
	"net/http"

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

// pickEntry is pickEntry for the request in sc.
func (sc *srvConn) pickEntry(t *route.Table) *route.Entry {
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
