package proxy

import (
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// pick asks the picker for a replica of rs, passing the request body to a
// pool.BodyPicker (the llm balancer routes by the prompt's prefix).
func (h *Handler) pick(rs []*pool.Replica, skip *pool.Replica, body []byte) *pool.Replica {
	if h.bodyPicker != nil {
		return h.bodyPicker.PickBody(rs, skip, body)
	}
	return h.picker.Pick(rs, skip)
}

// pickFirst picks the replica of a request's first attempt in pool p and
// counts the request in flight there (Replica.Acquire). With a
// pool.WaitPicker (the llm balancer's gateway queue) the request may wait
// here for a free slot; gone reports that its client left meanwhile (no
// replica taken). a is the serving path's attempt: it says whether the
// client left (see pool.Client).
func (h *Handler) pickFirst(p *pool.Pool, body []byte, a attempt) (rep *pool.Replica, gone bool) {
	if h.waitPicker == nil {
		rep = h.pick(p.Replicas, nil, body)
	} else {
		c, ok := a.(pool.Client)
		if !ok {
			c = stayingClient{}
		}
		var acquired bool
		var err error
		rep, acquired, err = h.waitPicker.PickWait(p.Name, p.Replicas, body, c)
		if err != nil {
			return nil, true
		}
		if acquired {
			return rep, false
		}
	}
	if rep != nil {
		rep.Acquire()
	}
	return rep, false
}

// stayingClient is the pool.Client of a serving path that cannot tell
// whether its client left.
type stayingClient struct{}

func (stayingClient) Done() <-chan struct{} { return nil }
func (stayingClient) Gone() bool            { return false }

// Done implements pool.Client: the request's context ends when the
// client leaves.
func (ex *exchange) Done() <-chan struct{} { return ex.r.Context().Done() }

// Gone implements pool.Client.
func (ex *exchange) Gone() bool { return ex.r.Context().Err() != nil }

// Done implements pool.Client: the loop has no channel for it (Gone looks).
func (x *rawExchange) Done() <-chan struct{} { return nil }

// Gone implements pool.Client: a non-blocking peek of the client
// connection, as the watcher's (see srvConn.startWatch). Bytes already
// read or pipelined mean the client is there.
func (x *rawExchange) Gone() bool {
	sc := x.sc
	if sc.gone.Load() {
		return true
	}
	if sc.br != nil && sc.br.Buffered() > 0 || sc.pending >= 0 {
		return false
	}
	_ = sc.c.SetReadDeadline(time.Time{}) // a past one would fail the peek
	if peekClient(sc.c) == peerGone {
		sc.gone.Store(true)
		return true
	}
	return false
}

var (
	_ pool.Client = (*exchange)(nil)
	_ pool.Client = (*rawExchange)(nil)
)
