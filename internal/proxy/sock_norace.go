//go:build linux && !race

package proxy

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket,
// as raw system calls (see sock). p is not empty.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}

// sysWritev is writev(2) of h and then p, both not empty, through iov.
func sysWritev(fd uintptr, iov *[2]syscall.Iovec, h, p []byte) (int, syscall.Errno) {
	iov[0].Base, iov[1].Base = &h[0], &p[0]
	iov[0].SetLen(len(h))
	iov[1].SetLen(len(p))
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
	return int(n), errno
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}
