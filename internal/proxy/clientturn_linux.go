//go:build linux

package proxy

import "time"

// clientTurn is the state of serveTurn, kept in the connection's state
// (and its callback made once per connection state) so that a turn
// allocates nothing.
type clientTurn struct {
	in  bool                  // sc.rd reads the socket without waiting (read)
	rd  turnReader            // those reads
	fn  func(fd uintptr) bool // sc.turnStep
	res loopStep              // why the turn ended
	// probeUntil, when set, is the end of the wait in force (armProbe),
	// which is then not the idle timeout's.
	probeUntil time.Time
}

// read reads once from the client's socket without waiting:
// errWouldBlock when it has nothing to read.
func (t *clientTurn) read(p []byte) (int, error) { return t.rd.Read(p) }

// kept is what a recycled connection state keeps of t: its callback,
// bound to the same state.
func (t *clientTurn) kept() clientTurn { return clientTurn{fn: t.fn} }

// serveTurn serves the client connection's requests from one turn of the
// runtime poller on its socket (syscall.RawConn.Read), for as long as
// each request comes whole (head and body) in what one read brings. It
// returns why the turn ended: a step for serve to take, as serveNext's.
//
// A wait of the poller begins by forgetting the socket's readiness (see
// pump), so a loop that waits for the next request with a read of its
// own reads once in vain per request: the client sends the next request
// only after it has the answer, and the read right after the answer finds
// nothing. Within one turn the poller forgets nothing: once a request is
// answered and the reader holds nothing more, the turn waits without
// reading, and anything the client sent after the turn's last read,
// which found the socket empty or took the request with it, wakes the
// turn. Only the turn's first read is blind. At saturation the loop made
// about 6.2 system calls per request where nginx makes 5.3; the
// read in vain was one of them.
//
// No read in the turn may wait (a second read of the socket would wait
// for the turn to end): the connection's reader reads without waiting
// while the turn lasts, and a request that is not whole in the reader,
// or one the loop hands on, is served outside the turn (stepResume).
func (sc *srvConn) serveTurn() loopStep {
	t := &sc.turn
	if t.fn == nil {
		t.fn = sc.turnStep
	}
	for {
		t.res, t.rd.Conn = stepEnd, sc.c
		err := sc.sk.raw.Read(t.fn)
		t.in, t.rd.Conn = false, nil
		if err == nil {
			return t.res
		}
		if !t.probeUntil.IsZero() && isTimeout(err) {
			// A wait after a read that brought bytes lasted turnProbe: a
			// new turn begins with a read, which tells whether an end of
			// file came with them (see turnProbe).
			t.probeUntil = time.Time{}
			if f := sc.s.onProbe; f != nil {
				f()
			}
			sc.armIdle()
			continue
		}
		return stepEnd // the idle deadline passed, or the connection closed
	}
}

// turnProbe bounds a turn's wait for the next request when the turn's
// last read brought bytes. Readiness the poller reports once may stand
// for bytes and an end of file that came together (a client that sent its
// request and shut its sending side down, in one go); the read takes the
// bytes, and only another read finds the end of file, which nothing wakes
// the turn for. Such a wait ends after turnProbe and a new turn reads:
// EAGAIN, and the wait goes on to the idle timeout, or the end of file,
// and the connection closes, at most turnProbe after the answer (nginx
// sees it at once: its poller keeps EPOLLRDHUP; Go's forgets it). A
// connection busy with requests moves the deadline once per sixteenth of
// turnProbe, not once per request.
const turnProbe = time.Second

// armProbe sets the read deadline of a turn's wait after a read that
// brought bytes (see turnProbe), from when the last exchange ended.
func (sc *srvConn) armProbe() {
	t := &sc.turn
	now := sc.ended
	if now.IsZero() {
		now = time.Now()
	}
	d := min(turnProbe, sc.s.idleTimeout()) // the probe never outlasts the idle timeout
	if !t.probeUntil.IsZero() && t.probeUntil.Sub(now) >= d-d/16 {
		return
	}
	_ = sc.c.SetReadDeadline(now.Add(d))
	t.probeUntil, sc.idleUntil = now.Add(d), time.Time{}
}

// turnStep is serveTurn's callback: it reads what the socket holds and
// serves the requests that came, and false waits for the next bytes.
// Each call begins with a read: the turn begins, or waits, only with the
// reader empty.
func (sc *srvConn) turnStep(fd uintptr) bool {
	t := &sc.turn
	t.rd.fd, t.in = fd, true
	// full: the last read filled the reader, and the socket may hold more
	// that no wake would announce. A read that brought bytes, full or not,
	// may also have left an end of file behind them (see turnProbe).
	full := false
	for {
		if sc.br.Buffered() == 0 {
			_, err := sc.br.Peek(1) // one read, into the whole buffer
			n := sc.br.Buffered()
			if n == 0 {
				if err == errWouldBlock {
					sc.waitNext(true)
					return false
				}
				t.res = stepEnd
				return true
			}
			full = n == sc.br.Size()
		}
		if r := sc.serveNext(true); r != stepNext {
			t.res = r
			return true
		}
		sc.state.Store(stateIdle)
		if sc.s.pastGrace() {
			t.res = stepEnd
			return true
		}
		if sc.br.Buffered() == 0 && !full {
			sc.waitNext(false)
			return false
		}
		// Pipelined bytes in the reader, or a read that filled it: the
		// socket may hold more, which no wake would announce.
	}
}

// waitNext arms the deadline of the turn's wait for the next request:
// the idle timeout once a read found the socket empty (empty), turnProbe
// after one that brought bytes.
func (sc *srvConn) waitNext(empty bool) {
	if empty {
		sc.turn.probeUntil = time.Time{}
		sc.armIdle()
		return
	}
	sc.armProbe()
}

// noDeadline forgets the probe deadline: another one was set.
func (t *clientTurn) noDeadline() { t.probeUntil = time.Time{} }
