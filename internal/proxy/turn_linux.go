//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// turnState is what a stream needs while its waits are short (see
// pump). It comes from turnStates when the stream begins and
// goes back once the stream ends or its waits grow long (a parked stream
// holds none), with its callbacks, made once per turnState.
type turnState struct {
	x     *rawExchange
	fn    func(fd uintptr) bool // t.step
	rd    turnReader            // the replica connection's reads during a turn
	err   error                 // why the turn ended: nil once the body ended
	armed time.Time             // when the read deadline was last moved
	late  bool                  // it was set pumpRearm late (see pumpRearm)
}

var turnStates = sync.Pool{New: func() any {
	t := new(turnState)
	t.fn = t.step
	return t
}}

// takeTurn gives x a turnState, if it has none.
func (x *rawExchange) takeTurn() {
	if x.turn == nil {
		x.turn = turnStates.Get().(*turnState)
		x.turn.x = x
	}
}

// releaseTurn gives x's turnState back.
func (x *rawExchange) releaseTurn() {
	if t := x.turn; t != nil {
		x.turn = nil
		*t = turnState{fn: t.fn}
		turnStates.Put(t)
	}
}

// turnReader reads the replica connection's socket during a turn, without
// waiting: errWouldBlock when it has nothing to read. It stands in for the
// connection under the connection's reader while the turn lasts.
type turnReader struct {
	net.Conn
	fd uintptr
}

// errWouldBlock: the socket has nothing to read now.
var errWouldBlock = errors.New("nothing to read yet")

// Read reads once from the socket, with sock's raw read (the socket does
// not block).
func (r *turnReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, errno := sysRead(r.fd, p)
		switch errno {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, opError("read", r.Conn, os.NewSyscallError("read", errno))
	}
}

// canPump reports whether the stream's next wait can be a turn of the
// poller: a stream whose waits are short, holding its read buffer.
func (x *rawExchange) canPump() bool {
	return !x.woke && !x.slow && x.pc.br.Size() > 0
}

// pump relays the stream's body in one turn of the runtime poller
// (syscall.RawConn.Read): it reads what the replica's socket holds,
// writes it to the client, and waits for the socket's next bytes without
// reading again when the read took less than the buffer holds (the
// socket had no more). A separate wait would begin with a read that
// finds nothing, once per chunk: the poller forgets the socket's readiness
// when a wait begins, so only the turn's first step must read blindly.
// Anything that arrives after a read wakes the turn's next step.
//
// It returns once the body ended (nil), or with relayBuffered's or a
// read's error, or with the wait's: a timeout that only marks the wait
// as long goes on as waitOn does (the stream parks, without its
// turnState).
func (x *rawExchange) pump() error {
	pc := x.pc
	if ok, err := pc.peek.rawConn(pc.c); !ok || err != nil {
		if err := x.waitStream(); err != nil {
			return err
		}
		return x.relayBuffered()
	}
	x.takeTurn()
	t := x.turn
	x.armPump(false)
	t.rd.Conn, t.err = pc.c, nil
	pc.cr.r, pc.cr.inTurn = &t.rd, true
	err := pc.peek.raw.Read(t.fn)
	pc.cr.r, pc.cr.inTurn = pc.c, false
	t.rd.Conn = nil
	if err == nil {
		return t.err
	}
	x.timedOut = x.armed
	if x.longWait(err) {
		x.releaseTurn()
		return x.waitOn(armIdle, true)
	}
	return err
}

// armPump arms the read deadline for a stream's wait that starts now and
// may park; late: for the waits that follow too (see pumpRearm).
func (x *rawExchange) armPump(late bool) {
	x.since = time.Time{}
	x.parking = true
	if late {
		x.parkLate = pumpRearm
	}
	x.arm(armIdle)
	x.parking, x.parkLate = false, 0
	x.turn.armed, x.turn.late = x.since, late
}

// pumpRearm is how often a turn moves the read deadline of its waits: at
// most once per pumpRearm, not once per chunk. The turn's first wait has
// its own deadline; once bytes came, the deadline to park is set
// pumpRearm later than parkAfter, so a stream still parks after a wait of
// between parkAfter and parkAfter+pumpRearm (the idle timeout, counted
// from the last move, may pass up to pumpRearm early instead).
const pumpRearm = parkAfter / 4

// step is pump's callback: one step of the turn, called first when the
// turn begins and then each time the poller saw the socket become
// readable. It returns false to wait for the socket, true to end the turn.
func (t *turnState) step(fd uintptr) bool {
	x := t.x
	br := x.pc.br
	t.rd.fd = fd
	for {
		drained := false
		if br.Buffered() == 0 {
			_, err := br.Peek(1) // one read
			n := br.Buffered()
			if n == 0 {
				if err == errWouldBlock {
					return false
				}
				t.err = err
				return true
			}
			drained = n < br.Size()
		}
		// Bytes read before the turn began are relayed, then the socket
		// is read: whatever came since may have been seen by the poller
		// before the turn.
		if err := x.relayBuffered(); err != nil {
			t.err = err
			return true
		}
		if x.cp.done {
			return true
		}
		if now := time.Now(); !t.late || now.Sub(t.armed) >= pumpRearm {
			x.armPump(true)
		}
		if drained {
			return false
		}
	}
}
