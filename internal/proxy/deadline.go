package proxy

import (
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
func (sc *srvConn) write(b []byte) (int, error) {
	if t, ok := sc.wdl.due(time.Now(), sc.h.opts.ClientWriteTimeout); ok {
		_ = sc.c.SetWriteDeadline(t)
	}
	return sc.c.Write(b)
}

// startWrites sets the write deadline of a request's answer through
// net/http, whatever writes it: the connection keeps the deadline of its
// previous answer otherwise, which may have passed.
func (h *Handler) startWrites(w http.ResponseWriter) writeDeadline {
	var wd writeDeadline
	if t, ok := wd.due(time.Now(), h.opts.ClientWriteTimeout); ok {
		_ = http.NewResponseController(w).SetWriteDeadline(t)
	}
	return wd
}

// armWrite moves the write deadline of an answer written through net/http
// (see writeDeadline).
func (ex *exchange) armWrite(rc *http.ResponseController) {
	if t, ok := ex.wdl.due(time.Now(), ex.h.opts.ClientWriteTimeout); ok {
		_ = rc.SetWriteDeadline(t)
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
