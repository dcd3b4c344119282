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
	"unsafe"

	"golang.org/x/sys/unix"
)

// turnState is what a stream needs while its waits are short (see pump
// and writeStream). It comes from turnStates when the stream begins and
// goes back once the stream ends or its waits grow long (a parked stream
// holds none), with its callbacks, made once per turnState.
type turnState struct {
	x     *rawExchange
	fn    func(fd uintptr) bool // t.step
	rd    turnReader            // the replica connection's reads during a turn
	err   error                 // why the turn ended: nil once the body ended
	armed time.Time             // when the read deadline was last moved
	late  bool                  // it was set pumpRearm late (see pumpRearm)

	// The client connection's raw writes (see writeStream).
	cw   syscall.RawConn       // nil until the first write
	cwNo bool                  // the client connection has none (TLS)
	wfn  func(fd uintptr) bool // t.writeStep
	wh   []byte                // what is left to write before wb
	wb   []byte                // what is left to write
	iov  [2]unix.Iovec         // wh and wb, for writev
	werr error                 // the write's error
}

var turnStates = sync.Pool{New: func() any {
	t := new(turnState)
	t.fn, t.wfn = t.step, t.writeStep
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
		*t = turnState{fn: t.fn, wfn: t.wfn}
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

// Read reads once from the socket. The socket does not block
// (O_NONBLOCK), so the read goes to the kernel as a raw system call.
func (r *turnReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, r.fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return 0, errWouldBlock
		case errno != 0:
			return 0, &net.OpError{Op: "read", Net: "tcp", Source: r.LocalAddr(), Addr: r.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
		case n == 0:
			return 0, io.EOF
		}
		return int(n), nil
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

// writeStream writes a stream's bytes to the client, as writeClient does.
// While the stream's waits are short, a write to a plain TCP client
// connection goes to the kernel as a raw system call, in a turn of the
// poller (syscall.RawConn.Write) that waits only when the socket takes no
// more: the socket does not block, and a write the runtime must account
// for as a system call that may block lets the scheduler hand the
// goroutine's processor to another thread while it lasts (a context
// switch, and a wait for the processor after).
func (x *rawExchange) writeStream(b []byte) bool { return x.writeStreamAt(nil, b, time.Time{}) }

// writeStreamAt writes head and b (either may be empty) as writeStream
// does, in one system call when it can, with the clock read at now (zero:
// not read yet).
func (x *rawExchange) writeStreamAt(head, b []byte, now time.Time) bool {
	t, sc := x.turn, x.sc
	if t != nil && t.cw == nil && !t.cwNo {
		if tc, ok := sc.c.(*net.TCPConn); ok {
			t.cw, _ = tc.SyscallConn()
		}
		t.cwNo = t.cw == nil
	}
	if t == nil || t.cwNo {
		if len(head) > 0 && len(b) > 0 {
			b = append(head[:len(head):len(head)], b...)
		} else if len(head) > 0 {
			b = head
		}
		return x.writeClientAt(b, now)
	}
	sc.moveWriteDeadline(now)
	t.wh, t.wb, t.werr = head, b, nil
	err := t.cw.Write(t.wfn)
	t.wh, t.wb, t.iov = nil, nil, [2]unix.Iovec{}
	if err == nil {
		err = t.werr
	}
	if err != nil {
		x.obs.Error = clientGoneCode(err)
		sc.gone.Store(true)
		return false
	}
	return true
}

// writeStep is writeStream's callback: it writes what is left, and returns
// false to wait until the socket takes more.
func (t *turnState) writeStep(fd uintptr) bool {
	for len(t.wh)+len(t.wb) > 0 {
		var n uintptr
		var errno syscall.Errno
		switch {
		case len(t.wh) > 0 && len(t.wb) > 0:
			t.iov[0].Base, t.iov[1].Base = &t.wh[0], &t.wb[0]
			t.iov[0].SetLen(len(t.wh))
			t.iov[1].SetLen(len(t.wb))
			n, _, errno = unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iov[0])), 2)
		case len(t.wh) > 0:
			n, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&t.wh[0])), uintptr(len(t.wh)))
		default:
			n, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&t.wb[0])), uintptr(len(t.wb)))
		}
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return false
		case errno != 0:
			sc := t.x.sc
			t.werr = &net.OpError{Op: "write", Net: "tcp", Source: sc.c.LocalAddr(), Addr: sc.c.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
			return true
		}
		h := min(int(n), len(t.wh))
		t.wh, t.wb = t.wh[h:], t.wb[int(n)-h:]
	}
	return true
}
