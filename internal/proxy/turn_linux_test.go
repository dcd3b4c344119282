//go:build linux

package proxy

import (
	"testing"
	"time"
)

// TestPumpParkDeadline: once bytes came in a turn, it moves its read
// deadline at most every pumpRearm, so it sets the deadline to park
// pumpRearm past parkAfter: a stream whose last bytes came up to pumpRearm
// after the deadline was set still waits at least parkAfter before it
// parks, as one whose every wait arms its own deadline.
func TestPumpParkDeadline(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	x := &rawExchange{
		sc:       &srvConn{},
		h:        &Handler{opts: Options{IdleTimeout: time.Minute}},
		resp:     &rawResp{chunked: true},
		since:    t0,
		parking:  true,
		parkLate: pumpRearm,
	}
	d, kind := x.deadlineFor(armIdle, t0)
	if kind != armPark || !d.Equal(t0.Add(parkAfter+pumpRearm)) {
		t.Fatalf("deadline %v (kind %d), want %v to park", d.Sub(t0), kind, parkAfter+pumpRearm)
	}
	for _, last := range []time.Duration{0, pumpRearm / 2, pumpRearm - time.Nanosecond} {
		if wait := d.Sub(t0.Add(last)); wait < parkAfter {
			t.Errorf("bytes %v after the move: the stream would park after a wait of %v, under parkAfter", last, wait)
		}
	}
}
