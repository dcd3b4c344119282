package proxy

import (
	"errors"
	"fmt"
	"net/http"
)

// Reconfigure makes opts the options of every request that arrives from
// now on (a configuration reload): timeouts, body limits, the buffered
// bytes budget, client keys, the access log and the rest. Requests in
// flight, streams included, keep the options they started with to their
// end. The routing table, the body budget's count and the Server serving
// h stay as they are.
//
// opts.Transport must be of the same kind as the one h was built with:
// an *Upstream when it was one (the Server's loop serves those), another
// RoundTripper when it was not. Nil keeps the current transport. An
// error changes nothing.
func (h *Handler) Reconfigure(opts Options) error {
	cur := h.current()
	if opts.Transport == nil {
		opts.Transport = cur.rt
	}
	_, isUp := opts.Transport.(*Upstream)
	if isUp != (cur.up != nil) {
		return errors.Join(errTransportKind, fmt.Errorf("have %T, got %T", cur.rt, opts.Transport))
	}
	next := newGeneration(opts, h.table, h.buffered)
	next.gen = h.gen
	h.gen.Store(next)
	return nil
}

// errTransportKind refuses a Reconfigure that would move the Handler
// between the Server's loop and net/http.
var errTransportKind = errors.New("reconfigure: the transport must stay an *Upstream, or stay another kind")

// current is the generation new requests are served by.
func (h *Handler) current() *Handler { return h.gen.Load() }

// Transport is the RoundTripper new requests are sent through.
func (h *Handler) Transport() http.RoundTripper { return h.current().rt }
