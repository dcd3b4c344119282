package proxy

import (
	"errors"
	"net/http"
	"time"
)

// Client-side deadlines, one per phase of a request and the same on both
// serving paths:
//
//   - idle: the wait for the next request on a kept-alive connection
//     (Server.IdleTimeout);
//   - head: from the request's first byte to the end of its head
//     (Server.ReadHeaderTimeout). A connection handed to net/http in the
//     middle of its head keeps the deadline the loop set (replayConn);
//   - body: from the end of the head to the end of the body
//     (Options.BodyTimeout), on the loop and in Handler.ServePool for
//     net/http;
//   - write: a client that takes no byte of an answer for
//     Options.ClientWriteTimeout is cut, and the replica's request with it.

// defaultBodyTimeout is Options.BodyTimeout's zero value.
const defaultBodyTimeout = 30 * time.Second

// bodyTimeout bounds reading a request body, from the end of its head;
// zero means none.
func (h *Handler) bodyTimeout() time.Duration {
	switch d := h.opts.BodyTimeout; {
	case d < 0:
		return 0
	case d == 0:
		return defaultBodyTimeout
	default:
		return d
	}
}

// bodyDeadline is when a body whose reading starts now must be read.
// Zero: no limit.
func (h *Handler) bodyDeadline(now time.Time) time.Time {
	if d := h.bodyTimeout(); d > 0 {
		return now.Add(d)
	}
	return time.Time{}
}

// writeDeadline arms a client connection's write deadline for
// Options.ClientWriteTimeout. Setting a deadline on every write would cost
// a timer update per stream chunk; it is moved forward only once a
// sixteenth of the timeout has passed, so a write is cut after between
// 15/16 of the timeout and the whole of it without progress.
type writeDeadline struct {
	until time.Time // the deadline in force; zero: none set
}

// due reports whether the deadline must be moved for a write starting at
// now, and moves the record of it.
func (w *writeDeadline) due(now time.Time, d time.Duration) (time.Time, bool) {
	if d <= 0 {
		return time.Time{}, false
	}
	if !w.until.IsZero() && w.until.Sub(now) >= d-d/16 {
		return time.Time{}, false
	}
	w.until = now.Add(d)
	return w.until, true
}

// write writes b to the client within the client write timeout. A write
// that failed, timed out or not, leaves the connection unusable.
func (sc *srvConn) write(b []byte) (int, error) { return sc.writeAt(b, time.Time{}) }

// writeAt is write with the clock read at now by the caller (zero: read
// it here, when a write timeout needs it).
func (sc *srvConn) writeAt(b []byte, now time.Time) (int, error) { return sc.writevAt(nil, b, now) }

// writevAt writes head and then b (either may be empty) as writeAt does,
// in one system call when it can.
func (sc *srvConn) writevAt(head, b []byte, now time.Time) (int, error) {
	sc.moveWriteDeadline(now)
	if sc.sk.ok() {
		return sc.sk.writev(sc.c, head, b)
	}
	if len(head) > 0 {
		b = append(head[:len(head):len(head)], b...)
	}
	return sc.c.Write(b)
}

// moveWriteDeadline sets the client write deadline, when due, for a write
// starting at now (zero: read the clock when needed).
func (sc *srvConn) moveWriteDeadline(now time.Time) {
	if d := sc.h.opts.ClientWriteTimeout; d > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		if t, ok := sc.wdl.due(now, d); ok {
			_ = sc.c.SetWriteDeadline(t)
		}
	} else if !sc.wdl.until.IsZero() {
		// A reload turned the timeout off: the deadline an earlier
		// answer armed would still cut this one once it passed.
		sc.wdl.until = time.Time{}
		_ = sc.c.SetWriteDeadline(time.Time{})
	}
}

// startWrites sets the write deadline of a request's answer through
// net/http, whatever writes it: the connection keeps the deadline of its
// previous answer otherwise, which may have passed.
func (h *Handler) startWrites(w http.ResponseWriter) writeDeadline {
	var wd writeDeadline
	if d := h.opts.ClientWriteTimeout; d > 0 {
		if t, ok := wd.due(time.Now(), d); ok {
			_ = http.NewResponseController(w).SetWriteDeadline(t)
		}
	}
	return wd
}

// armWrite moves the write deadline of an answer written through net/http
// (see writeDeadline).
func (ex *exchange) armWrite(rc *http.ResponseController) {
	if d := ex.h.opts.ClientWriteTimeout; d > 0 {
		if t, ok := ex.wdl.due(time.Now(), d); ok {
			_ = rc.SetWriteDeadline(t)
		}
	}
}

// clientWriteTimeout is the observation's error for a client cut by the
// client write timeout.
const clientWriteTimeout = "client_write_timeout"

// SetReadDeadline passes t on, except the first time: net/http then sets
// the deadline of the head it is about to read, which began arriving
// before the hand-off; the loop's head deadline stays in force.
func (c *replayConn) SetReadDeadline(t time.Time) error {
	if c.clamped.CompareAndSwap(false, true) && !c.headDeadline.IsZero() && (t.IsZero() || t.After(c.headDeadline)) {
		t = c.headDeadline
	}
	return c.Conn.SetReadDeadline(t)
}

// clientGoneCode is the observation's error for a failed client write:
// the client write timeout, or a client that hung up.
func clientGoneCode(err error) string {
	if isTimeout(err) {
		return clientWriteTimeout
	}
	return "client_closed"
}

// armKind names the deadline of an upstream read.
type armKind uint8

const (
	armNone    armKind = iota
	armWatch           // time to look whether the client hung up
	armHeader          // the response-header timeout
	armIdle            // the silence limit of a stream
	armTotal           // the whole request's timeout
	armGone            // the client hung up
	armUnknown         // no deadline set by the exchange
	armPark            // time for a stream's wait to park (see parkAfter)
)

// parkAfter is how long a stream's wait for its next bytes holds its read
// buffers and the request's goroutine (with the stack its call chain
// grew) before it parks (see rawExchange.park). Streams whose tokens come
// faster never park.
const parkAfter = 100 * time.Millisecond

// arm sets the read deadline of the replica connection for the next wait
// of phase (armHeader or armIdle) and records what a timeout will mean.
func (x *rawExchange) arm(phase armKind) {
	pc := x.pc
	now := time.Now()
	if x.since.IsZero() {
		x.since = now
	}
	d, kind := x.deadlineFor(phase, now)
	switch {
	case kind != armNone:
		if !(kind == armWatch && pc.keepWatch(d, now)) {
			pc.setReadDeadline(d)
			pc.rdl = d
		}
		x.armed = kind
		pc.deadline = true
	case x.armed != armNone: // clear a deadline left from before
		pc.setReadDeadline(time.Time{})
		x.armed = armNone
	}
	if x.sc.gone.Load() {
		// The client hung up: the watcher set a past deadline, which the
		// one just set may have overwritten. Restore it.
		pc.setReadDeadline(aLongTimeAgo)
		x.armed = armGone
	}
	pc.armed = now
}

// keepWatch reports whether the read deadline in force (one arm set)
// can stand for a first look at the client due at d: it comes at most a
// quarter of watchAfter before, and has not passed by now. A connection
// that answers many requests a second then moves its timer every few of
// them, not for each; a look that comes early only costs a peek. A
// deadline that passed is never kept: the wait would end at once, look
// again, and keep it again until d, a stream spinning through parks for
// up to watchAfter/4 (the early look itself arms a passed deadline).
func (pc *upConn) keepWatch(d, now time.Time) bool {
	return pc.rdl.After(now) && !pc.rdl.After(d) && d.Sub(pc.rdl) <= watchAfter/4
}

// deadlineFor is the next deadline of a wait of phase (armHeader,
// armIdle, or armNone for writing the request) and what its passing will
// mean: the earliest of the phase's own limit (counted from the start of
// the wait, x.since, however often the wait is re-armed), the whole
// request's timeout and, until the client need not be watched, the next
// look at it. armNone: no deadline.
func (x *rawExchange) deadlineFor(phase armKind, now time.Time) (time.Time, armKind) {
	var d time.Time
	kind := armNone
	switch phase {
	case armHeader:
		if t := x.h.up.ResponseHeaderTimeout; t > 0 {
			d, kind = x.since.Add(t), armHeader
		}
	case armIdle:
		if t := x.h.opts.IdleTimeout; t > 0 && (x.resp.chunked || x.resp.closeDelim || x.resp.sse) {
			d, kind = x.since.Add(t), armIdle
		}
	}
	if !x.deadline.IsZero() && (d.IsZero() || x.deadline.Before(d)) {
		d, kind = x.deadline, armTotal
	}
	if !x.sc.watching {
		// The first look watchAfter into the wait (however often it is
		// re-armed before: it parks), the next ones watchAfter apart.
		w := x.since.Add(watchAfter)
		if !w.After(now) {
			w = now.Add(watchAfter)
		}
		if d.IsZero() || w.Before(d) {
			d, kind = w, armWatch
		}
	}
	if x.parking {
		if p := x.since.Add(parkAfter + x.parkLate); d.IsZero() || p.Before(d) {
			d, kind = p, armPark
		}
	}
	return d, kind
}

// wait blocks until the replica connection has bytes to read, starting
// the hang-up watcher when the wait grows long.
func (x *rawExchange) wait(phase armKind) error {
	x.since = time.Time{} // a new wait: arm sets it
	if x.slow {
		x.pc.releaseReader() // a slow answer's waits hold no buffer from their start
	}
	return x.waitOn(phase, false)
}

// waitStream is a stream's wait for its next bytes: like wait, but once
// the wait is long (it holds no read buffer) it parks the stream
// (errParked) instead of blocking; after the parked wait ended it goes on
// with that wait.
func (x *rawExchange) waitStream() error {
	if !x.woke {
		x.since = time.Time{}
		if x.slow {
			x.pc.releaseReader()
		}
	}
	return x.waitOn(armIdle, true)
}

// errParked: the stream parked (see rawExchange.park).
var errParked = errors.New("stream parked")

func (x *rawExchange) waitOn(phase armKind, park bool) error {
	for {
		var err error
		if x.woke {
			// The parked wait ended: its outcome, under the deadline it
			// was armed with.
			x.woke = false
			if err = x.wakeErr; err == nil {
				x.pc.takeReader()
				_, err = x.pc.br.Peek(1)
			}
		} else {
			x.parking = park && !x.slow
			x.arm(phase)
			x.parking = false
			if park && x.pc.br.Size() == 0 {
				x.park()
				return errParked
			}
			err = x.pc.fill()
		}
		if err == nil {
			return nil
		}
		x.timedOut = x.armed
		if x.longWait(err) {
			continue
		}
		return err
	}
}

// longWait does what a wait's timeout asks for when it only marks the
// wait as long (x.armed is armPark or armWatch), and reports whether it
// did: the wait goes on then, holding no read buffer.
func (x *rawExchange) longWait(err error) bool {
	if !isTimeout(err) {
		return false
	}
	switch x.armed {
	case armPark:
		// The stream's wait is long: it parks, with no buffer.
		x.slow = true
		x.pc.releaseReader()
		x.sc.releaseBuffers()
	case armWatch:
		x.sc.startWatch()
		x.slow = true
		x.pc.releaseReader() // the wait is long: read the socket's readiness, not bytes
	default:
		return false
	}
	return true
}
