//go:build !linux

package proxy

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
