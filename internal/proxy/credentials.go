package proxy

import (
	"net/http"

	"github.com/cutover-dev/cutover/internal/pool"
)

// credentials is the Authorization a request to one replica carries:
// value, the replica's own ("" for none), and whether the client's
// Authorization header is left out. The zero value passes the client's
// header through unchanged.
type credentials struct {
	value      string
	dropClient bool
}

// credentials decides what rep gets: its own key when it has one (the
// client's never reaches it then), else the client's header only when
// Options.ForwardClientAuthorization is set. Every serving path asks
// here, so they cannot disagree.
func (h *Handler) credentials(rep *pool.Replica) credentials {
	return credentials{value: rep.Authorization, dropClient: rep.Authorization != "" || !h.opts.ForwardClientAuthorization}
}

// apply sets hdr (a copy of the client's header) to what the replica
// gets.
func (c credentials) apply(hdr http.Header) {
	if c.dropClient {
		delete(hdr, "Authorization")
	}
	if c.value != "" {
		hdr["Authorization"] = []string{c.value}
	}
}
