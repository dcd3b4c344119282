//go:build !linux

package proxy

import "time"

// turnState is empty here: streams wait with waitStream and write with
// writeClient.
type turnState struct{}

func (x *rawExchange) takeTurn()     {}
func (x *rawExchange) releaseTurn()  {}
func (x *rawExchange) canPump() bool { return false }

func (x *rawExchange) pump() error {
	if err := x.waitStream(); err != nil {
		return err
	}
	return x.relayBuffered()
}

func (x *rawExchange) writeStream(b []byte) bool { return x.writeClient(b) }

func (x *rawExchange) writeStreamAt(head, b []byte, now time.Time) bool {
	if len(head) > 0 {
		b = append(head[:len(head):len(head)], b...)
	}
	return x.writeClientAt(b, now)
}
