package metrics

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/proxy"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func stream(pool string, ttft time.Duration) *proxy.Observation {
	return &proxy.Observation{Pool: pool, Status: 200, Stream: true, Bytes: 10, TTFT: ttft}
}

// TestHistorySlots: requests, errors and TTFT p95 land in 10 s slots per
// pool; the current slot's rates are over its elapsed part; slots an hour
// old are dropped and reused.
func TestHistorySlots(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	h := NewHistory(clock.now, "blue", "green")

	// Slot 0: 20 blue requests, 2 failed (a 502 and an error inside a 200
	// stream), 18 streams; a client that left is no error.
	for range 16 {
		h.Observe(stream("blue", 100*time.Millisecond))
	}
	h.Observe(stream("blue", 900*time.Millisecond))
	h.Observe(&proxy.Observation{Pool: "blue", Status: 200, Stream: true, Bytes: 10, TTFT: 100 * time.Millisecond, StreamError: true})
	h.Observe(&proxy.Observation{Pool: "blue", Status: 502, Error: "upstream_unreachable"})
	h.Observe(&proxy.Observation{Pool: "blue", Status: 499, Error: "client_closed"})
	clock.add(10 * time.Second)
	// Slot 1, 5 s in: 10 green requests.
	clock.add(5 * time.Second)
	for range 10 {
		h.Observe(&proxy.Observation{Pool: "green", Status: 200})
	}

	snap := h.Snapshot()
	if snap.ResolutionSeconds != 10 || len(snap.Pools["blue"]) != 2 || len(snap.Pools["green"]) != 2 {
		t.Fatalf("snapshot: %+v", snap)
	}
	b0, b1, g1 := snap.Pools["blue"][0], snap.Pools["blue"][1], snap.Pools["green"][1]
	if !b0.Time.Equal(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)) || !g1.Time.Equal(b0.Time.Add(10*time.Second)) {
		t.Errorf("slot times %s, %s", b0.Time, g1.Time)
	}
	if b0.RequestsPerSecond != 2 || b0.ErrorsPerSecond != 0.2 || b0.ErrorRatio != 0.1 {
		t.Errorf("blue slot 0: %+v, want 2 req/s, 0.2 err/s, ratio 0.1", b0)
	}
	// 18 TTFTs: 17 at 100 ms, 1 at 900 ms; the p95 (rank 18) is the 900 ms one.
	if b0.TTFTP95MS == nil || math.Abs(*b0.TTFTP95MS-900)/900 > 0.1 {
		t.Errorf("blue slot 0 TTFT p95 %v, want 900 ms ±10%%", b0.TTFTP95MS)
	}
	if b1.RequestsPerSecond != 0 || b1.TTFTP95MS != nil {
		t.Errorf("blue slot 1: %+v, want empty", b1)
	}
	// The current slot: 10 requests over the 5 s that passed.
	if g1.RequestsPerSecond != 2 || g1.ErrorRatio != 0 || g1.TTFTP95MS != nil {
		t.Errorf("green current slot: %+v, want 2 req/s, no errors, no TTFT", g1)
	}

	// An hour later the window is full: 360 points, and the first slot's
	// place was reused, not added to.
	clock.add(time.Hour - 15*time.Second)
	for range 5 {
		h.Observe(stream("blue", 50*time.Millisecond))
	}
	clock.add(10 * time.Second)
	snap = h.Snapshot()
	blue := snap.Pools["blue"]
	if len(blue) != HistorySlots {
		t.Fatalf("%d points after an hour, want %d", len(blue), HistorySlots)
	}
	if last := blue[len(blue)-2]; last.RequestsPerSecond != 0.5 || last.TTFTP95MS == nil || math.Abs(*last.TTFTP95MS-50)/50 > 0.1 {
		t.Errorf("slot an hour on: %+v, want 0.5 req/s and p95 50 ms", last)
	}
	for _, p := range blue[:len(blue)-2] {
		if p.RequestsPerSecond != 0 {
			t.Errorf("old traffic still in the window at %s: %+v", p.Time, p)
		}
	}
	if first := blue[0].Time; !first.Equal(clock.now().Truncate(10 * time.Second).Add(-(HistorySlots - 1) * 10 * time.Second)) {
		t.Errorf("window starts at %s", first)
	}
}

// TestHistoryLateObservation: an observation for a slot already reused
// for a later period is dropped, not counted in the newer one.
func TestHistoryLateObservation(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	h := NewHistory(clock.now, "blue")
	p := periodOf(clock.now())
	if s := h.slot("blue", p+HistorySlots); s == nil {
		t.Fatal("no slot for a later period")
	}
	if s := h.slot("blue", p); s != nil {
		t.Errorf("a slot for a period an hour older than its current one")
	}
}

// TestHistoryConcurrent: observations from many goroutines across a slot
// change are all counted (run with -race).
func TestHistoryConcurrent(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 6, 12, 0, 5, 0, time.UTC)}
	h := NewHistory(clock.now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				if g == 0 && i == 250 {
					clock.add(10 * time.Second)
				}
				h.Observe(stream("blue", time.Duration(i)*time.Millisecond))
			}
		})
	}
	wg.Wait()
	var n uint64
	v, _ := h.pools.Load("blue")
	for i := range v.(*poolHistory).ring {
		n += v.(*poolHistory).ring[i].requests.Load()
	}
	if n != 4000 {
		t.Errorf("counted %d requests, want 4000", n)
	}
}

// TestTTFTBins: every duration falls in a bin whose middle is within 10 %.
func TestTTFTBins(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 7 * time.Millisecond, 120 * time.Millisecond, 3 * time.Second, 90 * time.Second} {
		h := NewHistory(func() time.Time { return time.Unix(1000, 0) })
		h.Observe(stream("blue", d))
		p := h.Snapshot().Pools["blue"][0]
		want := float64(d) / float64(time.Millisecond)
		if p.TTFTP95MS == nil || math.Abs(*p.TTFTP95MS-want)/want > 0.1 {
			t.Errorf("TTFT %s: p95 %v ms", d, p.TTFTP95MS)
		}
	}
}

// BenchmarkHistoryObserve is the per-request cost of the traffic history.
func BenchmarkHistoryObserve(b *testing.B) {
	h := NewHistory(nil, "blue", "green")
	o := stream("blue", 120*time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(o)
		}
	})
}
