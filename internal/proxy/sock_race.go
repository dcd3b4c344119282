//go:build linux && race

package proxy

import "syscall"

// sysRead and sysWrite go through package syscall under the race
// detector: its Read and Write tell the detector that what one goroutine
// wrote to a socket happens before another read it (a raw system call
// would not, and every test that checks a handler's work after its
// answer would report a race).
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

// sysWritev writes h only under the race detector (package syscall has
// no writev): a short write, which the caller goes on from.
func sysWritev(fd uintptr, _ *[2]syscall.Iovec, h, _ []byte) (int, syscall.Errno) {
	return sysWrite(fd, h)
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
