//go:build linux

package proxy

// clientTurn is the state of serveTurn, kept in the connection's state
// (and its callback made once per connection state) so that a turn
// allocates nothing.
type clientTurn struct {
	in  bool                  // sc.rd reads the socket without waiting (read)
	rd  turnReader            // those reads
	fn  func(fd uintptr) bool // sc.turnStep
	res loopStep              // why the turn ended
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
	t.res, t.rd.Conn = stepEnd, sc.c
	err := sc.sk.raw.Read(t.fn)
	t.in, t.rd.Conn = false, nil
	if err != nil {
		return stepEnd // the idle deadline passed, or the connection closed
	}
	return t.res
}

// turnStep is serveTurn's callback: it reads what the socket holds and
// serves the requests that came, and false waits for the next bytes.
func (sc *srvConn) turnStep(fd uintptr) bool {
	t := &sc.turn
	t.rd.fd, t.in = fd, true
	for {
		if sc.br.Buffered() == 0 {
			if _, err := sc.br.Peek(1); err != nil {
				if err == errWouldBlock {
					return false
				}
				t.res = stepEnd
				return true
			}
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
		if sc.br.Buffered() == 0 {
			sc.armIdle()
			return false
		}
	}
}
