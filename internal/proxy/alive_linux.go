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

// peerState is what a non-blocking peek learnt of a connection's peer.
type peerState uint8

const (
	peerQuiet peerState = iota // nothing to read, or unknown
	peerSent                   // bytes are waiting to be read
	peerGone                   // end of file or a reset: the peer left
)

// peekClient looks, without blocking and without consuming, whether the
// peer of c sent bytes or left.
func peekClient(c net.Conn) peerState {
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
	_ = raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			st = peerSent
		case rerr == nil, rerr != syscall.EAGAIN && rerr != syscall.EINTR:
			st = peerGone
		}
		return true // never wait
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
