//go:build linux

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open: a non-blocking
// peek finds nothing to read (EAGAIN). A closed one reads end-of-file, and
// an idle one must never have data pending.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = errors.Is(rerr, syscall.EAGAIN) // nothing to read, not closed
		return true                          // never wait
	})
	return err == nil && ok
}
