//go:build !linux

package proxy

import "errors"

// clientTurn is unused here: no socket has a sock (see the Linux
// version).
type clientTurn struct{ in bool }

func (*clientTurn) read([]byte) (int, error) { return 0, errors.New("proxy: no turn here") }

func (*clientTurn) kept() clientTurn { return clientTurn{} }

// serveTurn waits for the next request with a read, then serves it.
func (sc *srvConn) serveTurn() loopStep {
	if _, err := sc.br.Peek(1); err != nil {
		return stepEnd
	}
	return sc.serveNext(false)
}

func (*clientTurn) noDeadline() {}
