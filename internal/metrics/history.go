package metrics

import (
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// History keeps the last hour of each pool's traffic in memory, in 10 s
// slots: requests, failed requests and a TTFT histogram per slot, so the
// dashboard can draw request rate, error rate and TTFT p95 as soon as it
// opens. It implements proxy.Observer; a request counts in the slot in
// which it ends. The zero value is not usable: call NewHistory.
type History struct {
	now func() time.Time
	// wall: now is time.Now, so an observation's own end (Start plus
	// Duration, read from the same clock) is the time it ends, without
	// another clock read.
	wall  bool
	since time.Time
	pools sync.Map // pool name -> *poolHistory
	// last is the pool slot looked up last: nearly every request goes
	// to the same pool as the one before, and a pool's entry never
	// changes once stored, so it is found without the map's hashing.
	last atomic.Pointer[poolHistory]
}

// History's shape.
const (
	// HistoryResolution is the span of one slot.
	HistoryResolution = 10 * time.Second
	// HistorySlots is how many slots are kept: one hour.
	HistorySlots = 360
)

// TTFT histogram: bin i holds TTFTs in [ttftBase·ttftFactor^(i-1),
// ttftBase·ttftFactor^i), bin 0 those below ttftBase, the last one all
// above; a p95 read from it is within about 10 % of the true value.
const (
	ttftBase   = time.Millisecond
	ttftFactor = 1.2
	ttftBins   = 68 // up to about 200 s
)

type poolHistory struct {
	name string     // the pool's, for History.last
	mu   sync.Mutex // serialises resetting a slot for a new period
	ring [HistorySlots]historySlot
}

// historySlot is one 10 s period of one pool. Observations update it with
// atomics only; period changes under poolHistory.mu.
type historySlot struct {
	period   atomic.Int64 // unix time / resolution of the counts; 0 never used
	requests atomic.Uint64
	failed   atomic.Uint64
	ttft     [ttftBins]atomic.Uint32
}

// NewHistory returns an empty history of pools (others are added when
// they get traffic) that reads the time from now (nil: time.Now); it holds
// traffic from now on.
func NewHistory(now func() time.Time, pools ...string) *History {
	wall := now == nil
	if wall {
		now = time.Now
	}
	h := &History{now: now, wall: wall, since: now()}
	for _, p := range pools {
		h.pools.Store(p, &poolHistory{name: p})
	}
	return h
}

func periodOf(t time.Time) int64 { return t.Unix() / int64(HistoryResolution/time.Second) }

// Observe counts one request in its pool's current slot. It implements
// proxy.Observer.
func (h *History) Observe(o *proxy.Observation) {
	if o.Pool == "" {
		return
	}
	var end time.Time
	if h.wall && !o.Start.IsZero() {
		end = o.Start.Add(o.Duration)
	} else {
		end = h.now()
	}
	s := h.slot(o.Pool, periodOf(end))
	if s == nil {
		return
	}
	s.requests.Add(1)
	if o.Failed() {
		s.failed.Add(1)
	}
	if o.Stream && o.Status == http.StatusOK && o.Bytes > 0 {
		s.ttft[ttftBin(o.TTFT)].Add(1)
	}
}

// slot returns pool's slot for period p, emptied first if it held an older
// period; nil for a period older than the slot's (a late observation).
func (h *History) slot(pool string, p int64) *historySlot {
	ph := h.last.Load()
	if ph == nil || ph.name != pool {
		v, ok := h.pools.Load(pool)
		if !ok {
			v, _ = h.pools.LoadOrStore(pool, &poolHistory{name: pool})
		}
		ph = v.(*poolHistory)
		h.last.Store(ph)
	}
	s := &ph.ring[p%HistorySlots]
	if s.period.Load() == p {
		return s
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	switch cur := s.period.Load(); {
	case cur > p:
		return nil
	case cur < p:
		s.requests.Store(0)
		s.failed.Store(0)
		for i := range s.ttft {
			s.ttft[i].Store(0)
		}
		s.period.Store(p)
	}
	return s
}

func ttftBin(d time.Duration) int {
	if d < ttftBase {
		return 0
	}
	i := 1 + int(math.Log(float64(d)/float64(ttftBase))/math.Log(ttftFactor))
	return min(i, ttftBins-1)
}

// ttftQuantile returns the q quantile of the counts in bins, in
// milliseconds: the geometric middle of the bin holding it. ok is false
// without samples.
func ttftQuantile(bins *[ttftBins]atomic.Uint32, q float64) (ms float64, ok bool) {
	var counts [ttftBins]uint64
	var total uint64
	for i := range bins {
		counts[i] = uint64(bins[i].Load())
		total += counts[i]
	}
	if total == 0 {
		return 0, false
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			base := float64(ttftBase) / float64(time.Millisecond)
			if i == 0 {
				return base / 2, true
			}
			lo := base * math.Pow(ttftFactor, float64(i-1))
			return lo * math.Sqrt(ttftFactor), true
		}
	}
	return 0, false // not reached
}

// Snapshot returns every pool's points from the later of the history's
// start and an hour ago, oldest first, the current (partial) slot last,
// its rates over the part of it that has passed.
func (h *History) Snapshot() api.Traffic {
	now := h.now()
	cur := periodOf(now)
	first := max(periodOf(h.since), cur-HistorySlots+1)
	res := int64(HistoryResolution / time.Second)
	out := api.Traffic{ResolutionSeconds: int(res), Since: h.since.UTC(), Pools: map[string][]api.TrafficPoint{}}
	h.pools.Range(func(k, v any) bool {
		ph := v.(*poolHistory)
		points := make([]api.TrafficPoint, 0, cur-first+1)
		for p := first; p <= cur; p++ {
			start := time.Unix(p*res, 0).UTC()
			span := HistoryResolution.Seconds()
			if p == cur {
				span = max(1, now.Sub(start).Seconds())
			}
			pt := api.TrafficPoint{Time: start}
			if s := &ph.ring[p%HistorySlots]; s.period.Load() == p {
				n, failed := s.requests.Load(), s.failed.Load()
				pt.RequestsPerSecond = round3(float64(n) / span)
				pt.ErrorsPerSecond = round3(float64(failed) / span)
				if n > 0 {
					pt.ErrorRatio = round3(float64(failed) / float64(n))
				}
				if ms, ok := ttftQuantile(&s.ttft, 0.95); ok {
					v := round3(ms)
					pt.TTFTP95MS = &v
				}
			}
			points = append(points, pt)
		}
		out.Pools[k.(string)] = points
		return true
	})
	return out
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

var _ proxy.Observer = (*History)(nil)
