package driver

import (
	"testing"
	"time"
)

// TestDriftClockBacksOff: after a repair that failed, the next look waits
// twice as long each time, up to maxDriftWait, so that a load balancer
// that cannot take the table is not reloaded every few seconds (the
// reviewer's finding: two reloads every 30 s, for good); one that worked
// brings back the usual period.
func TestDriftClockBacksOff(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	d := driftClock{every: 10 * time.Second, last: t0}
	for _, tc := range []struct {
		after time.Duration
		due   bool
	}{{9 * time.Second, false}, {10 * time.Second, true}} {
		if got := d.due(t0.Add(tc.after)); got != tc.due {
			t.Fatalf("at +%s: due %v, want %v", tc.after, got, tc.due)
		}
	}
	now := t0.Add(10 * time.Second)
	for _, want := range []time.Duration{20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, maxDriftWait, maxDriftWait} {
		d.repaired(false, now)
		if d.due(now.Add(want - time.Second)) {
			t.Fatalf("due %s after a failed repair, want a wait of %s", want-time.Second, want)
		}
		if !d.due(now.Add(want)) {
			t.Fatalf("not due %s after a failed repair", want)
		}
		now = now.Add(want)
	}
	d.repaired(true, now)
	if !d.due(now.Add(10 * time.Second)) {
		t.Fatal("a repair that worked did not bring back the 10 s period")
	}
}
