package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPickBelowTheEphemeralRange: picked ports are outside the range the
// kernel hands out by itself, and free: a listener binds each.
func TestPickBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if low > lowest+1 && (p < lowest || p >= low) {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, low)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d was not free: %v", p, err)
		}
		ln.Close()
	}
}
