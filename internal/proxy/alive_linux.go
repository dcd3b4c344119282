//go:build linux

package proxy

import (
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peeker tells whether an idle connection is still open, with nothing
// unread: a non-blocking peek finds nothing to read (EAGAIN). A closed one
// reads end-of-file, and an idle one must never have data pending. It
// runs before every reuse of a pooled connection (sendChecked, for the
// connection loop's requests), so its raw connection and callbacks are
// made once, on first use, and a check allocates nothing.
type peeker struct {
	raw syscall.RawConn // nil until first use
	fn  func(fd uintptr)
	ok  bool
	buf [1]byte

	// sendChecked's state, kept here so that its callback, made once,
	// allocates nothing.
	send  func(fd uintptr) bool
	out   []byte        // what to write
	n     int           // how much of out went out
	wait  bool          // wait for the answer once out is written
	stage sendStage     // how far the callback got
	errno syscall.Errno // the write's error
	// closed: the peek found the connection closed (not stray bytes).
	closed bool
}

// sendStage is how far sendChecked's callback got.
type sendStage uint8

const (
	sendChecking sendStage = iota // looking for unread bytes
	sendStale                     // found some, or an end of file or error
	sendWaiting                   // out written whole; waiting for the answer
)

// rawConn makes p's raw connection on first use; false: c has none.
func (p *peeker) rawConn(c net.Conn) (ok bool, err error) {
	if p.raw != nil {
		return true, nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	p.raw = raw
	p.fn = func(fd uintptr) {
		p.ok = peekIdle(fd, &p.buf) == peerQuiet
	}
	p.send = p.sendStep
	return true, nil
}

// peekIdle tells what an idle socket fd holds: nothing, and it is not
// closed (peerQuiet: a non-blocking peek finds nothing, EAGAIN), bytes
// (peerSent), or the peer's end of file or a reset (peerGone). The peek
// cannot block (MSG_DONTWAIT), so it goes to the kernel as a raw system
// call, without the scheduler's bookkeeping for one that might.
func peekIdle(fd uintptr, buf *[1]byte) peerState {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == unix.EAGAIN:
		return peerQuiet
	case errno == 0 && n == 0, errno != 0 && errno != unix.EINTR:
		return peerGone
	}
	return peerSent
}

// peerClosed reports that the last look at the connection (sendChecked's)
// found it closed by the replica, not holding stray bytes.
func (p *peeker) peerClosed() bool { return p.closed }

func (p *peeker) alive(c net.Conn) bool {
	if ok, err := p.rawConn(c); !ok {
		return err == nil
	}
	p.ok = false
	err := p.raw.Control(p.fn)
	return err == nil && p.ok
}

// sendChecked writes b to c, a kept-alive replica connection, after
// making sure that c holds no unread byte and is not closed (errStale
// otherwise, with nothing written): bytes a replica sent after its last
// answer must never be read as the answer to this request (issue 16,
// fault 8). With wait, it then blocks until c has something to read (or
// its read deadline passes), without reading.
//
// All of it is one turn of the runtime poller (syscall.RawConn.Read):
// the peek runs after the poller forgot any earlier readiness of c, and
// the wait that follows the write is woken by anything that arrives
// after the peek, so the answer's arrival cannot be missed, and no read
// is spent finding the socket empty right after the write (the peek
// already is that read). Without it, each request paid a peek before
// the write and a read that failed with EAGAIN after it.
//
// n is how much of b went out. n < len(b) with a nil error: the socket
// took no more without blocking; the caller writes the rest with c.Write
// (and then reads without waiting first). err with n == len(b) is the
// wait's (a deadline).
func (p *peeker) sendChecked(c net.Conn, b []byte, wait bool) (n int, err error) {
	if ok, err := p.rawConn(c); !ok {
		if err != nil {
			return 0, err
		}
		if !p.alive(c) {
			return 0, errStale
		}
		return 0, nil // the caller writes it all
	}
	p.out, p.n, p.wait, p.stage, p.errno, p.closed = b, 0, wait, sendChecking, 0, false
	err = p.raw.Read(p.send)
	n, p.out = p.n, nil
	switch {
	case p.stage == sendStale:
		return 0, errStale
	case p.errno != 0:
		return n, opError("write", c, os.NewSyscallError("write", p.errno))
	}
	return n, err
}

// sendStep is sendChecked's callback: true ends the turn, false waits
// for c to become readable and calls it again.
func (p *peeker) sendStep(fd uintptr) bool {
	if p.stage != sendChecking {
		return true // the poller saw the answer arrive
	}
	if st := peekIdle(fd, &p.buf); st != peerQuiet {
		p.stage, p.closed = sendStale, st == peerGone
		return true
	}
	for p.n < len(p.out) {
		b := p.out[p.n:min(len(p.out), p.n+maxRW)]
		m, errno := sysWrite(fd, b)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN || (errno == 0 && m == 0):
			return true // the rest goes through the poller's write
		case errno != 0:
			p.errno = errno
			return true
		}
		p.n += m
	}
	if !p.wait {
		return true
	}
	p.stage = sendWaiting
	return false
}

// peerState is what a non-blocking peek learnt of a connection's peer.
type peerState uint8

const (
	peerQuiet peerState = iota // nothing to read, or unknown
	peerSent                   // bytes are waiting to be read
	peerGone                   // end of file or a reset: the peer left
)

// peekClient looks, without blocking and without consuming, whether the
// peer of c sent bytes or left. A TLS connection is looked at through
// its TCP connection: the bytes there are records, and a client that
// hangs up sends one (close_notify) before its FIN, so there the end of
// the peer's stream (POLLRDHUP) decides, whatever is still unread.
func peekClient(c net.Conn) peerState {
	tlsConn := false
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c, tlsConn = u.NetConn(), true
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return peerQuiet
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return peerQuiet
	}
	st := peerQuiet
	var buf [1]byte
	_ = raw.Control(func(fd uintptr) {
		if tlsConn {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
			if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
				switch ev := fds[0].Revents; {
				case ev&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0:
					st = peerGone
				case ev&unix.POLLIN != 0:
					st = peerSent
				}
			}
			return
		}
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			st = peerSent
		case rerr == nil, rerr != syscall.EAGAIN && rerr != syscall.EINTR:
			st = peerGone
		}
	})
	return st
}

// waitReadable blocks until c has bytes or news (end of file, an error)
// to read, or its read deadline passes, without reading: a wait that
// holds no buffer.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil // the read that follows reports it
	}
	var buf [1]byte
	peeked := false
	return raw.Read(func(fd uintptr) bool {
		if peeked {
			// The poller saw the socket become readable: the read that
			// follows finds out what came (and waits if nothing did).
			return true
		}
		peeked = true
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return rerr != syscall.EAGAIN // wait while there is nothing to read
	})
}
