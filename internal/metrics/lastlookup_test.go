package metrics

import (
	"net/url"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// TestHistoryLastPoolAlternating: requests alternating between pools
// (the last-looked-up pool changing every time), and one to a pool the
// history did not know, count where they belong.
func TestHistoryLastPoolAlternating(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	h := NewHistory(clock.now, "blue", "green")
	for i := range 30 {
		pool := "blue"
		if i%3 == 2 {
			pool = "green"
		}
		h.Observe(&proxy.Observation{Pool: pool, Status: 200})
	}
	h.Observe(&proxy.Observation{Pool: "canary", Status: 200})
	h.Observe(&proxy.Observation{Pool: "blue", Status: 200})
	clock.add(5 * time.Second)
	snap := h.Snapshot()
	for pool, want := range map[string]float64{"blue": 21.0 / 5, "green": 10.0 / 5, "canary": 1.0 / 5} {
		pts := snap.Pools[pool]
		if len(pts) != 1 || pts[0].RequestsPerSecond != want {
			t.Errorf("%s: %+v, want %v requests/s", pool, pts, want)
		}
	}
}

// TestHandlesForLastPruned: the handles looked up last are taken again
// without the map, but not once prune deleted them, even when a lookup
// racing with prune put them back as the last ones.
func TestHandlesForLastPruned(t *testing.T) {
	m := New(&mutableSource{})
	u, _ := url.Parse("http://10.0.0.1:8000")
	r := pool.NewReplica(u)
	h := m.handlesFor("blue", r)
	if again := m.handlesFor("blue", r); again != h || m.lastHandles.Load() != h {
		t.Fatalf("second lookup: %p (last %p), want %p", again, m.lastHandles.Load(), h)
	}
	if none := m.handlesFor("blue", nil); none == h || m.lastHandles.Load() != h {
		t.Fatalf("a pool's none handles: %p (last %p)", none, m.lastHandles.Load())
	}
	// As prune does, then the racing lookup's store.
	h.pruned.Store(true)
	m.handles.Delete(r)
	m.lastHandles.Store(h)
	if got := m.handlesFor("blue", r); got == h {
		t.Fatal("pruned handles taken from lastHandles")
	}
}

// TestHistoryWallClockEnd: with the real clock, an observation counts in
// the slot of its own end (Start plus Duration), the one it would count
// in when the clock were read as it is observed; one without a Start
// reads the clock.
func TestHistoryWallClockEnd(t *testing.T) {
	for range 3 {
		h := NewHistory(nil, "blue")
		now := time.Now()
		cur := periodOf(now)
		// Ended more than a slot ago: in an earlier slot.
		start := now.Add(-HistoryResolution - time.Second)
		h.Observe(&proxy.Observation{Pool: "blue", Status: 200, Start: start, Duration: time.Second / 2})
		h.Observe(&proxy.Observation{Pool: "blue", Status: 200})
		if periodOf(time.Now()) != cur {
			continue // a slot's edge passed meanwhile: once more
		}
		ph, _ := h.pools.Load("blue")
		ring := &ph.(*poolHistory).ring
		prev := periodOf(start.Add(time.Second / 2))
		if s := &ring[prev%HistorySlots]; s.period.Load() != prev || s.requests.Load() != 1 {
			t.Errorf("slot of the observation's end: period %d requests %d, want %d and 1", s.period.Load(), s.requests.Load(), prev)
		}
		if s := &ring[cur%HistorySlots]; s.period.Load() != cur || s.requests.Load() != 1 {
			t.Errorf("slot of now: period %d requests %d, want %d and 1", s.period.Load(), s.requests.Load(), cur)
		}
		return
	}
	t.Fatal("a slot's edge passed during each of three tries")
}
