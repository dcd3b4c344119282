//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
)

// sock reads and writes a TCP connection of the hot path (a client's, a
// replica's) with raw system calls, through the runtime poller like
// net.Conn does: the same deadlines, the same wait when the socket has
// nothing to read or no room to write, the same errors.
//
// The difference is the call itself. net.Conn's read and write tell the
// scheduler that the thread may block in the kernel (entersyscall and
// exitsyscall); a thread that stays there over a tick of the runtime's
// monitor (sysmon, 20 µs at first) has its P handed to another thread,
// which has to be woken and which the first one competes with for the P
// when it returns. A socket of the net package never blocks (O_NONBLOCK),
// but a write on loopback does the receiver's TCP work too and often
// lasts that long: at saturation the monitor woke every few tens of µs
// and handed Ps back and forth, about a tenth of the gateway's CPU. A
// raw call counts as the goroutine running, which it is: the kernel
// works on the gateway's behalf and returns without waiting.
//
// The zero sock is unusable (ok false): the caller falls back to the
// connection's own Read and Write, as for TLS or a non-TCP connection.
type sock struct {
	raw syscall.RawConn
	// The callbacks and their state live here, made once per connection,
	// so that a read or a write allocates nothing.
	rfn, wfn func(fd uintptr) bool
	h, p     []byte // a write's head and body (h empty but for writev)
	n        int
	errno    syscall.Errno
	iov      [2]syscall.Iovec // writev's
}

// init makes s for c: false when c is not a plain TCP connection.
func (s *sock) init(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	s.raw = raw
	s.rfn = s.readStep
	s.wfn = s.writeStep
	return true
}

// ok reports whether s is made.
func (s *sock) ok() bool { return s.raw != nil }

// read reads into p from c, as c.Read does.
func (s *sock) read(c net.Conn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.p, s.n, s.errno = p, 0, 0
	err := s.raw.Read(s.rfn)
	n, errno := s.n, s.errno
	s.p = nil
	switch {
	case err != nil:
		return 0, opError("read", c, err)
	case errno != 0:
		return 0, opError("read", c, os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readStep is read's callback: false waits for c to become readable.
func (s *sock) readStep(fd uintptr) bool {
	for {
		n, errno := sysRead(fd, s.p)
		switch errno {
		case 0:
			s.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.errno = errno
		return true
	}
}

// maxRW bounds one system call's length, as the net package does.
const maxRW = 1 << 30

// write writes all of b to c, as c.Write does.
func (s *sock) write(c net.Conn, b []byte) (int, error) { return s.writev(c, nil, b) }

// writev writes all of head and then b to c (either may be empty), in one
// system call when the socket takes both.
func (s *sock) writev(c net.Conn, head, b []byte) (int, error) {
	if len(head)+len(b) == 0 {
		return 0, nil
	}
	s.h, s.p, s.n, s.errno = head, b, 0, 0
	err := s.raw.Write(s.wfn)
	n, errno := s.n, s.errno
	s.h, s.p, s.iov = nil, nil, [2]syscall.Iovec{}
	switch {
	case errno != 0:
		return n, opError("write", c, os.NewSyscallError("write", errno))
	case err != nil:
		return n, opError("write", c, err)
	}
	return n, nil
}

// writeStep is writev's callback: false waits for room to write the rest.
func (s *sock) writeStep(fd uintptr) bool {
	for len(s.h)+len(s.p) > 0 {
		var m int
		var errno syscall.Errno
		if len(s.h) > 0 && len(s.p) > 0 && len(s.h)+len(s.p) <= maxRW {
			m, errno = sysWritev(fd, &s.iov, s.h, s.p)
		} else {
			b := s.h
			if len(b) == 0 {
				b = s.p
			}
			m, errno = sysWrite(fd, b[:min(len(b), maxRW)])
		}
		switch errno {
		case 0:
			if m == 0 {
				s.errno = syscall.EIO // as io.ErrShortWrite: no progress
				return true
			}
			s.n += m
			h := min(m, len(s.h))
			s.h, s.p = s.h[h:], s.p[m-h:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.errno = errno
			return true
		}
	}
	return true
}

// opError wraps err as net.Conn's Read and Write do: a *net.OpError
// naming op and c's addresses. An error of the poller (a deadline, a
// closed connection) comes as net.rawConn's *net.OpError; its cause is
// kept.
func opError(op string, c net.Conn, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
