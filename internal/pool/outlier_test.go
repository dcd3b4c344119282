package pool_test

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

var quietLog = slog.New(slog.DiscardHandler)

// fakeClock is the outlier detector's clock in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newOutlier returns a detector with Envoy-like settings on a fake clock,
// and the ejections it reported.
func newOutlier(clock *fakeClock) (*pool.Outlier, *[]string) {
	var (
		mu   sync.Mutex
		seen []string
	)
	o := &pool.Outlier{
		Consecutive5xx:     5,
		Interval:           10 * time.Second,
		MinimumRequests:    10,
		BaseEjectionTime:   30 * time.Second,
		MaxEjectionTime:    300 * time.Second,
		MaxEjectionPercent: 50,
		Now:                clock.Now,
		Logger:             quietLog,
	}
	o.OnEject = func(p string, r *pool.Replica, reason string) {
		mu.Lock()
		seen = append(seen, p+" "+r.Name+" "+reason)
		mu.Unlock()
	}
	o.OnOverflow = func(p string, r *pool.Replica) {
		mu.Lock()
		seen = append(seen, p+" "+r.Name+" overflow")
		mu.Unlock()
	}
	return o, &seen
}

// TestOutlierConsecutive: a replica is ejected after Consecutive5xx
// failed attempts in a row, never after one; a success in between, or an
// outcome that says nothing (a client that left), starts no new count.
func TestOutlierConsecutive(t *testing.T) {
	// Steps: S success, F 5xx, C connect failure, R reset before an
	// answer, N nothing learned. want is E where the step ejects.
	tests := []struct {
		name  string
		steps string
		want  string
	}{
		{"one failure never ejects", "F", "."},
		{"five in a row eject", "FFFFF", "....E"},
		{"connect failures and resets count", "CRCRC", "....E"},
		{"broken answers count", "BFBCB", "....E"},
		{"a success resets the count", "FFFFSFFFF", "........."},
		{"none neither counts nor resets", "FFNFNFF", "......E"},
		{"4xx-style success after four", "FFFFSFFFFF", ".........E"},
	}
	outcome := map[rune]pool.Outcome{'S': pool.OutcomeSuccess, 'F': pool.OutcomeFailure, 'C': pool.OutcomeConnectFailure,
		'R': pool.OutcomeReset, 'B': pool.OutcomeBroken, 'N': pool.OutcomeNone}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1000, 0)}
			o, _ := newOutlier(clock)
			rs := replicas(t, 3)
			p := &pool.Pool{Name: "blue", Replicas: rs}
			var got strings.Builder
			for _, s := range tt.steps {
				was := rs[0].Healthy()
				o.Record(p, rs[0], outcome[s])
				clock.advance(time.Millisecond)
				if was && !rs[0].Healthy() {
					got.WriteByte('E')
				} else {
					got.WriteByte('.')
				}
			}
			if got.String() != tt.want {
				t.Errorf("steps %s: got %s, want %s", tt.steps, got.String(), tt.want)
			}
		})
	}
}

// TestOutlierFailureRate: a replica failing half its requests is never
// five in a row, but the failure-rate rule ejects it once the window holds
// MinimumRequests; a new window starts the count again.
func TestOutlierFailureRate(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	o, seen := newOutlier(clock)
	o.FailureRate = 0.5
	rs := replicas(t, 2)
	p := &pool.Pool{Name: "blue", Replicas: rs}
	// Eight attempts, half failed, then a new window: not enough.
	for i := range 8 {
		o.Record(p, rs[0], []pool.Outcome{pool.OutcomeSuccess, pool.OutcomeFailure}[i%2])
	}
	clock.advance(11 * time.Second)
	for i := range 9 {
		o.Record(p, rs[0], []pool.Outcome{pool.OutcomeSuccess, pool.OutcomeFailure}[i%2])
		if !rs[0].Healthy() {
			t.Fatalf("ejected after %d attempts of the new window, want 10 (minimum_requests)", i+1)
		}
	}
	o.Record(p, rs[0], pool.OutcomeFailure) // 5 of 10
	if rs[0].Healthy() {
		t.Fatal("5 of 10 failed in a window (rate 0.5) did not eject")
	}
	if want := []string{"blue " + rs[0].Name + " failure_rate"}; !slices.Equal(*seen, want) {
		t.Errorf("events %q, want %q", *seen, want)
	}
	if h := rs[0].Health(); h.Healthy || !strings.Contains(h.LastError, "5 of 10 requests failed") || h.EjectedUntil.IsZero() {
		t.Errorf("Health() = %+v, want the ejection and its reason", h)
	}
}

// TestOutlierEjectionTime: an ejection lasts base × the ejections in a
// row, capped by MaxEjectionTime; Tick brings the replica back when it is
// over, and one that then serves for MaxEjectionTime starts from base.
func TestOutlierEjectionTime(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	o, _ := newOutlier(clock)
	o.MaxEjectionTime = 70 * time.Second
	rs := replicas(t, 2)
	p := &pool.Pool{Name: "blue", Replicas: rs}
	fail := func() {
		for range 5 {
			o.Record(p, rs[0], pool.OutcomeFailure)
		}
		if rs[0].Healthy() {
			t.Fatal("five failures did not eject")
		}
	}
	// wantOut checks that the ejection lasts d: still out just before,
	// back at d.
	wantOut := func(d time.Duration) {
		t.Helper()
		clock.advance(d - time.Second)
		o.Tick()
		if rs[0].Healthy() {
			t.Fatalf("back before %s", d)
		}
		clock.advance(time.Second)
		o.Tick()
		if !rs[0].Healthy() {
			t.Fatalf("still out after %s", d)
		}
		if n := rs[0].Failures(); n != 0 {
			t.Fatalf("back with %d failures counted, want a clean slate", n)
		}
	}
	fail()
	wantOut(30 * time.Second)
	// One failure after the return is not five: no ejection.
	o.Record(p, rs[0], pool.OutcomeFailure)
	if !rs[0].Healthy() {
		t.Fatal("one failure after the return ejected again")
	}
	fail()
	wantOut(60 * time.Second)
	fail()
	wantOut(70 * time.Second) // 90s capped
	clock.advance(70 * time.Second)
	fail()
	wantOut(30 * time.Second) // served long enough: from base again
}

// TestOutlierMaxEjectionPercent: never more than the configured share of
// a pool is out, counting replicas active checks took out; a pool's only
// replica is never ejected at 50%.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		down     []int // replicas active checks took out
		percent  int
		failing  []int
		want     int // replicas ejected
		overflow int
	}{
		{"one of two", 2, nil, 50, []int{0, 1}, 1, 1},
		{"only replica", 1, nil, 50, []int{0}, 0, 1},
		{"one of three", 3, nil, 50, []int{0, 1, 2}, 1, 2},
		{"two of four", 4, nil, 50, []int{0, 1, 2}, 2, 1},
		{"the other is down", 2, []int{1}, 50, []int{0}, 0, 1},
		{"all at 100", 2, nil, 100, []int{0, 1}, 2, 0},
		{"off at 0", 2, nil, 0, []int{0}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1000, 0)}
			o, seen := newOutlier(clock)
			o.MaxEjectionPercent = tt.percent
			rs := replicas(t, tt.n)
			for _, i := range tt.down {
				rs[i].Eject(clock.Now(), errDown)
			}
			p := &pool.Pool{Name: "blue", Replicas: rs}
			for _, i := range tt.failing {
				for range 5 {
					o.Record(p, rs[i], pool.OutcomeFailure)
				}
			}
			ejected, overflow := 0, 0
			for _, s := range *seen {
				if strings.HasSuffix(s, " overflow") {
					overflow++
				} else {
					ejected++
				}
			}
			if ejected != tt.want || overflow != tt.overflow {
				t.Errorf("%d ejected, %d refused, want %d and %d (%q)", ejected, overflow, tt.want, tt.overflow, *seen)
			}
		})
	}
}

// TestNilOutlier: a Handler without outlier detection records nothing.
func TestNilOutlier(t *testing.T) {
	var o *pool.Outlier
	rs := replicas(t, 1)
	o.Record(&pool.Pool{Replicas: rs}, rs[0], pool.OutcomeFailure)
	o.Tick()
	if !rs[0].Healthy() {
		t.Error("a nil Outlier ejected")
	}
}

// TestLeastOutstandingWeighsFailures: a replica failing every request at
// once has nothing in flight; after a few failures in a row it loses to a
// loaded replica that answers, and a success makes it even again.
func TestLeastOutstandingWeighsFailures(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	o, _ := newOutlier(clock)
	o.Consecutive5xx = 0 // weigh only, never eject
	rs := replicas(t, 2)
	p := &pool.Pool{Name: "blue", Replicas: rs}
	for range 20 {
		rs[1].Acquire()
	}
	for range 5 {
		o.Record(p, rs[0], pool.OutcomeFailure)
	}
	var lo pool.LeastOutstanding
	for range 100 {
		if got := lo.Pick(rs, nil); got != rs[1] {
			t.Fatalf("picked the failing replica over one with 20 in flight")
		}
	}
	o.Record(p, rs[0], pool.OutcomeSuccess)
	for range 100 {
		if got := lo.Pick(rs, nil); got != rs[0] {
			t.Fatalf("after a success the idle replica should win again")
		}
	}
	// Failures weigh only while recent: a replica that failed a few times
	// and then got no more traffic is tried again a second later (a
	// regression: it lost every pick for good, so it never got the
	// success that clears the count, nor the failure that ejects it).
	for range 5 {
		o.Record(p, rs[0], pool.OutcomeFailure)
	}
	if got := lo.Pick(rs, nil); got != rs[1] {
		t.Fatalf("picked the replica that just failed 5 times over one with 20 in flight")
	}
	clock.advance(time.Second)
	if got := lo.Pick(rs, nil); got != rs[0] {
		t.Fatalf("a second after its last failure the idle replica should be tried again")
	}
}

// TestOutlierConcurrent records from many goroutines while Tick runs:
// race-free, and the ejection bookkeeping stays consistent.
func TestOutlierConcurrent(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	o, _ := newOutlier(clock)
	o.FailureRate = 0.5
	rs := replicas(t, 4)
	p := &pool.Pool{Name: "blue", Replicas: rs}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				out := pool.OutcomeSuccess
				if (i+g)%3 == 0 {
					out = pool.OutcomeFailure
				}
				o.Record(p, rs[(i+g)%len(rs)], out)
				if i%100 == 0 {
					clock.advance(time.Second)
					o.Tick()
				}
				_ = rs[i%len(rs)].Health()
			}
		})
	}
	wg.Wait()
	out := 0
	for _, r := range rs {
		if !r.Healthy() {
			out++
		}
	}
	if out > 2 {
		t.Errorf("%d of 4 replicas out at max_ejection_percent 50", out)
	}
}

// TestRoundRobinNeverNilWhileOneIsUp: concurrent picks share the counter,
// so one Pick's turns could all land on the unavailable replica; it
// returned nil (503 no_healthy_replica) with a healthy replica beside.
func TestRoundRobinNeverNilWhileOneIsUp(t *testing.T) {
	rs := replicas(t, 2)
	rs[1].Eject(time.Now(), errDown)
	var rr pool.RoundRobin
	var wg sync.WaitGroup
	var nils atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 20000 {
				if rr.Pick(rs, nil) == nil {
					nils.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := nils.Load(); n != 0 {
		t.Errorf("%d picks returned nil with a healthy replica in the pool", n)
	}
}

// TestActiveCheckEndsConnectEjection: a replica ejected for refused or
// reset connections, or answers whose connection broke, is back as soon as an active check passes (it
// connects and answers again: a restarted replica), while one ejected for
// 5xx answers stays out until its time is over (the check runs no
// completion). Tick forgets the ended ejection.
func TestActiveCheckEndsConnectEjection(t *testing.T) {
	for _, tt := range []struct {
		name string
		out  pool.Outcome
		back bool
	}{
		{"connect failures", pool.OutcomeConnectFailure, true},
		{"resets", pool.OutcomeReset, true},
		{"answers broken part-way (a replica killed while answering)", pool.OutcomeBroken, true},
		{"5xx", pool.OutcomeFailure, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1000, 0)}
			o, _ := newOutlier(clock)
			rs := replicas(t, 2)
			p := &pool.Pool{Name: "blue", Replicas: rs}
			for range 5 {
				o.Record(p, rs[0], tt.out)
			}
			if rs[0].Healthy() {
				t.Fatal("not ejected")
			}
			changed := rs[0].RecordCheck(clock.Now(), nil, 2, 2)
			if rs[0].Healthy() != tt.back || changed != tt.back {
				t.Fatalf("after a passed check: healthy %v (changed %v), want %v", rs[0].Healthy(), changed, tt.back)
			}
			o.Tick()
			if rs[0].Healthy() != tt.back {
				t.Fatalf("after Tick: healthy %v, want %v", rs[0].Healthy(), tt.back)
			}
			// A new ejection works as before.
			for range 5 {
				o.Record(p, rs[0], pool.OutcomeFailure)
			}
			if rs[0].Healthy() {
				t.Fatal("not ejected again")
			}
		})
	}
}

// BenchmarkOutlierRecord is the per-request cost of outlier detection on
// the data plane's path: a success.
func BenchmarkOutlierRecord(b *testing.B) {
	o := &pool.Outlier{Consecutive5xx: 5, FailureRate: 0.5, MaxEjectionPercent: 50, Logger: quietLog}
	rs := replicas(b, 2)
	p := &pool.Pool{Name: "blue", Replicas: rs}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.Record(p, rs[0], pool.OutcomeSuccess)
		}
	})
}

// TestOutlierReturnsEarlyWhenNoneLeft: when health checks take a pool's
// other replicas out after an ejection, leaving none in rotation, the
// ejected replica whose checks pass and whose ejection ends soonest comes
// back early, and only then (a regression: one replica ejected for 5xx and
// the other hung made every request 503 for the rest of the ejection). The
// pool is looked at as it is now (Resolve), not as it was at the ejection.
func TestOutlierReturnsEarlyWhenNoneLeft(t *testing.T) {
	for _, tt := range []struct {
		name    string
		n       int
		ejected []int // ejected in this order, 1 s apart
		down    []int // then failing their checks
		now     []int // the pool as Resolve gives it; nil: as at the ejections
		back    []int // healthy after Tick
	}{
		{"one of two, the other down", 2, []int{0}, []int{1}, nil, []int{0}},
		{"one of three, another down", 3, []int{0}, []int{1}, nil, []int{2}},
		{"one of three, nothing else", 3, []int{0}, nil, nil, []int{1, 2}},
		{"two of four, the two others down: the sooner back", 4, []int{0, 1}, []int{2, 3}, nil, []int{0}},
		{"ejected and failing its checks too", 2, []int{0}, []int{0, 1}, nil, nil},
		{"the pool rebuilt since, with none left", 4, []int{0}, []int{3}, []int{0, 3}, []int{0, 1, 2}},
		{"the pool rebuilt since, another in it", 4, []int{0}, []int{1}, []int{0, 2}, []int{2, 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1000, 0)}
			o, _ := newOutlier(clock)
			o.MaxEjectionPercent = 50
			rs := replicas(t, tt.n)
			p := &pool.Pool{Name: "blue", Replicas: rs}
			if tt.now != nil {
				cur := &pool.Pool{Name: "blue"}
				for _, i := range tt.now {
					cur.Replicas = append(cur.Replicas, rs[i])
				}
				o.Resolve = func(name string) *pool.Pool {
					if name != "blue" {
						t.Errorf("Resolve(%q)", name)
					}
					return cur
				}
			}
			for _, i := range tt.ejected {
				for range 5 {
					o.Record(p, rs[i], pool.OutcomeFailure)
				}
				if rs[i].Healthy() {
					t.Fatalf("replica %d not ejected", i)
				}
				clock.advance(time.Second)
			}
			for _, i := range tt.down {
				rs[i].Eject(clock.Now(), errDown)
			}
			o.Tick()
			var healthy []int
			for i, r := range rs {
				if r.Healthy() {
					healthy = append(healthy, i)
				}
			}
			if !slices.Equal(healthy, tt.back) {
				t.Fatalf("healthy after Tick: %v, want %v", healthy, tt.back)
			}
		})
	}
}
