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
	p        []byte
	n        int
	errno    syscall.Errno
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
func (s *sock) write(c net.Conn, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.p, s.n, s.errno = b, 0, 0
	err := s.raw.Write(s.wfn)
	n, errno := s.n, s.errno
	s.p = nil
	switch {
	case errno != 0:
		return n, opError("write", c, os.NewSyscallError("write", errno))
	case err != nil:
		return n, opError("write", c, err)
	}
	return n, nil
}

// writeStep is write's callback: false waits for room to write the rest.
func (s *sock) writeStep(fd uintptr) bool {
	for s.n < len(s.p) {
		b := s.p[s.n:min(len(s.p), s.n+maxRW)]
		m, errno := sysWrite(fd, b)
		switch errno {
		case 0:
			if m == 0 {
				s.errno = syscall.EIO // as io.ErrShortWrite: no progress
				return true
			}
			s.n += m
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
