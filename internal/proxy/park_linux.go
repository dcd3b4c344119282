//go:build linux

package proxy

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readiness waits for a parked stream's replica socket to have bytes (or
// news) to read, without a read buffer. Its raw connection and callback
// are made on the stream's first park, so that a wait allocates nothing:
// an allocation could grow the waiting goroutine's stack past the 2 KiB it
// starts with. The peek before the wait cannot block (MSG_DONTWAIT): a raw
// system call, like peeker's.
type readiness struct {
	raw    syscall.RawConn // nil until first use
	fn     func(fd uintptr) bool
	peeked bool
	buf    [1]byte
}

// await returns once c is readable (as waitReadable), or its read
// deadline passed.
func (r *readiness) await(c net.Conn) error {
	if r.raw == nil {
		sc, ok := c.(syscall.Conn)
		if !ok {
			return nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil // the read that follows reports it
		}
		r.raw = raw
		r.fn = func(fd uintptr) bool {
			if r.peeked {
				// The poller saw the socket become readable.
				return true
			}
			r.peeked = true
			_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), 1,
				unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
			return errno != unix.EAGAIN // wait while there is nothing to read
		}
	}
	r.peeked = false
	return r.raw.Read(r.fn)
}
