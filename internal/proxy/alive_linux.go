//go:build linux

package proxy

import (
	"net"
	"syscall"
)

// peeker tells whether an idle connection is still open, with nothing
// unread: a non-blocking peek finds nothing to read (EAGAIN). A closed one
// reads end-of-file, and an idle one must never have data pending. It
// runs before every reuse of a pooled connection, so its raw connection
// and callback are made once, on first use, and a check allocates nothing.
type peeker struct {
	raw syscall.RawConn // nil until first use
	fn  func(fd uintptr) bool
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
		p.fn = func(fd uintptr) bool {
			_, _, rerr := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			p.ok = rerr == syscall.EAGAIN // nothing to read, not closed
			return true                   // never wait
		}
	}
	p.ok = false
	err := p.raw.Read(p.fn)
	return err == nil && p.ok
}
