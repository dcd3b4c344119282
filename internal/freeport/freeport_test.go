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

// TestPickNeverTwice: ports picked and not yet bound (two listeners of
// one test, picked before either process binds) are all different. 3000
// random picks of about 22000 ports would repeat one almost surely.
func TestPickNeverTwice(t *testing.T) {
	if ephemeralLow()-lowest < 10000 {
		t.Skip("the range below the ephemeral ports is too small here")
	}
	seen := map[int]bool{}
	for i := range 3000 {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("pick %d: port %d given twice", i, p)
		}
		seen[p] = true
	}
}
