//go:build !linux

package proxy

// turnState is empty here: streams wait with waitStream.
type turnState struct{}

func (x *rawExchange) canPump() bool { return false }

func (x *rawExchange) pump() error {
	if err := x.waitStream(); err != nil {
		return err
	}
	return x.relayBuffered()
}

func (x *rawExchange) writeStream(b []byte) bool { return x.writeClient(b) }
