//go:build linux

package proxy

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peeker tells whether an idle connection is still open, with nothing
// unread: a non-blocking peek finds nothing to read (EAGAIN). A closed one
// reads end-of-file, and an idle one must never have data pending. It
// runs before every reuse of a pooled connection, so its raw connection
// and callback are made once, on first use, and a check allocates nothing.
// The peek cannot block (MSG_DONTWAIT), so it goes to the kernel as a raw
// system call, without the scheduler's bookkeeping for one that might.
type peeker struct {
	raw syscall.RawConn // nil until first use
	fn  func(fd uintptr)
	ok  bool
	buf [1]byte
}

func (p *peeker) alive(c net.Conn) bool {
	if p.raw == nil {
		sc, ok := c.(syscall.Conn)
		if !ok {
			return true
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		p.raw = raw
		p.fn = func(fd uintptr) {
			_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), 1,
				unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
			p.ok = errno == unix.EAGAIN // nothing to read, not closed
		}
	}
	p.ok = false
	err := p.raw.Control(p.fn)
	return err == nil && p.ok
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
