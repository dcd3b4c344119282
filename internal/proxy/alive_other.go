//go:build !linux

package proxy

import "net"

// peeker cannot peek without blocking here: it trusts the connection, and
// the stale-connection retry recovers.
type peeker struct{}

func (*peeker) alive(net.Conn) bool { return true }

// peerClosed is false here: nothing was looked at.
func (*peeker) peerClosed() bool { return false }

// sendChecked leaves the whole write to the caller here (see the Linux
// version): without a peek, a stray byte is read as part of the answer.
func (*peeker) sendChecked(net.Conn, []byte, bool) (int, error) { return 0, nil }

// peerState is what a non-blocking peek learnt of a connection's peer.
type peerState uint8

const (
	peerQuiet peerState = iota // nothing to read, or unknown
	peerSent                   // bytes are waiting to be read
	peerGone                   // end of file or a reset: the peer left
)

// peekClient cannot peek without blocking here: a client's hang-up is
// noticed when writing to it.
func peekClient(net.Conn) peerState { return peerQuiet }

// waitReadable cannot wait without reading here: the read that follows
// waits.
func waitReadable(net.Conn) error { return nil }
