package pool_test

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// replicas returns n healthy replicas named http://rN.test.
func replicas(t testing.TB, n int) []*pool.Replica {
	t.Helper()
	rs := make([]*pool.Replica, n)
	for i := range rs {
		u, err := url.Parse(fmt.Sprintf("http://r%d.test", i))
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = pool.NewReplica(u)
	}
	return rs
}

var errDown = errors.New("down")

// setup makes replica i unhealthy where healthy[i] is false and gives it
// inflight[i] requests in flight.
func setup(t *testing.T, healthy []bool, inflight []int64) []*pool.Replica {
	t.Helper()
	rs := replicas(t, len(healthy))
	for i, r := range rs {
		if !healthy[i] {
			r.Eject(time.Now(), errDown)
		}
		for range inflight[i] {
			r.Acquire()
		}
	}
	return rs
}

func TestPickers(t *testing.T) {
	const picks = 300
	tests := []struct {
		name     string
		healthy  []bool
		inflight []int64
		skip     int   // index of the replica to skip, -1 for none
		allowed  []int // indexes a pick may return; empty means nil
		lo, rr   bool  // which pickers the case applies to
	}{
		{"no replicas", nil, nil, -1, nil, true, true},
		{"none healthy", []bool{false, false, false}, []int64{0, 0, 0}, -1, nil, true, true},
		{"only healthy one skipped", []bool{true, false}, []int64{0, 0}, 0, nil, true, true},
		{"single replica", []bool{true}, []int64{9}, -1, []int{0}, true, true},
		{"skips the unhealthy", []bool{false, true, false, true}, []int64{0, 5, 0, 5}, -1, []int{1, 3}, true, true},
		{"skips skip", []bool{true, true, true}, []int64{0, 0, 0}, 1, []int{0, 2}, true, true},
		{"skip and unhealthy leave one", []bool{true, false, true}, []int64{0, 0, 0}, 0, []int{2}, true, true},
		{"less loaded of two", []bool{true, true}, []int64{50, 1}, -1, []int{1}, true, false},
		{"less loaded of two, other order", []bool{true, true}, []int64{0, 50}, -1, []int{0}, true, false},
		{"never the most loaded of three", []bool{true, true, true}, []int64{3, 100, 4}, -1, []int{0, 2}, true, false},
		{"less loaded left after skip", []bool{true, true, true}, []int64{0, 100, 4}, 0, []int{2}, true, false},
		{"loaded unhealthy ignored", []bool{true, false, true}, []int64{7, 0, 7}, -1, []int{0, 2}, true, false},
	}
	for _, tt := range tests {
		pickers := map[string]pool.Picker{}
		if tt.lo {
			pickers["least_outstanding"] = pool.LeastOutstanding{}
		}
		if tt.rr {
			pickers["round_robin"] = &pool.RoundRobin{}
		}
		for pname, p := range pickers {
			t.Run(pname+"/"+tt.name, func(t *testing.T) {
				rs := setup(t, tt.healthy, tt.inflight)
				var skip *pool.Replica
				if tt.skip >= 0 {
					skip = rs[tt.skip]
				}
				seen := map[int]bool{}
				for range picks {
					got := p.Pick(rs, skip)
					if len(tt.allowed) == 0 {
						if got != nil {
							t.Fatalf("Pick = %s, want nil", got.Name)
						}
						continue
					}
					i := slices.Index(rs, got)
					if !slices.Contains(tt.allowed, i) {
						t.Fatalf("Pick = replica %d (%v), want one of %v", i, got, tt.allowed)
					}
					seen[i] = true
				}
				// Every allowed replica gets traffic: a fair picker, not a
				// fixed one (the chance of missing one by luck is ~2^-300).
				for _, i := range tt.allowed {
					if !seen[i] {
						t.Errorf("replica %d never picked in %d picks", i, picks)
					}
				}
			})
		}
	}
}

func TestRoundRobinCycles(t *testing.T) {
	tests := []struct {
		name    string
		healthy []bool
		skip    int
		want    []int
	}{
		{"all healthy", []bool{true, true, true}, -1, []int{0, 1, 2, 0, 1, 2, 0}},
		// Regression: the replica after an unavailable one used to take its
		// turns too (0 2 2 0 2 2), doubling its load.
		{"middle unhealthy", []bool{true, false, true}, -1, []int{0, 2, 0, 2, 0, 2}},
		{"skip first", []bool{true, true, true}, 0, []int{1, 2, 1, 2, 1, 2}},
		{"two of four down", []bool{false, true, false, true}, -1, []int{1, 3, 1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := setup(t, tt.healthy, make([]int64, len(tt.healthy)))
			var skip *pool.Replica
			if tt.skip >= 0 {
				skip = rs[tt.skip]
			}
			var rr pool.RoundRobin // works at its zero value
			var got []int
			for range tt.want {
				got = append(got, slices.Index(rs, rr.Pick(rs, skip)))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("picks %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewPicker(t *testing.T) {
	for _, name := range []string{"", "least_outstanding", "round_robin"} {
		if p, err := pool.NewPicker(name); err != nil || p == nil {
			t.Errorf("NewPicker(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := pool.NewPicker("random"); err == nil || !strings.Contains(err.Error(), `"random"`) {
		t.Errorf("NewPicker(random) error = %v, want one naming it", err)
	}
}

// TestPickersConcurrent picks from many goroutines while health and load
// change underneath. Regression: LeastOutstanding counted the healthy
// replicas, then looked them up again; a replica ejected in between made
// the lookup return nil and Pick panic (nil dereference, or IntN(0)).
func TestPickersConcurrent(t *testing.T) {
	for name, p := range map[string]pool.Picker{"least_outstanding": pool.LeastOutstanding{}, "round_robin": &pool.RoundRobin{}} {
		t.Run(name, func(t *testing.T) {
			rs := replicas(t, 3)
			var stop atomic.Bool
			var flipper sync.WaitGroup
			flipper.Go(func() {
				for i := 0; !stop.Load(); i++ {
					r := rs[i%len(rs)]
					if i%2 == 0 {
						r.Eject(time.Now(), errDown)
					} else {
						r.SetInitial(time.Now(), nil)
					}
				}
			})
			var pickers sync.WaitGroup
			for range 8 {
				pickers.Go(func() {
					for range 20000 {
						if r := p.Pick(rs, rs[0]); r != nil {
							if r == rs[0] {
								t.Error("picked the skipped replica")
								return
							}
							r.Acquire()
							r.Release()
						}
					}
				})
			}
			pickers.Wait()
			stop.Store(true)
			flipper.Wait()
			for _, r := range rs {
				if n := r.InFlight(); n != 0 {
					t.Errorf("%s: %d in flight after balanced Acquire/Release", r.Name, n)
				}
			}
		})
	}
}

func TestRecordCheck(t *testing.T) {
	// Steps are P (pass) and F (fail); after each step we expect H/U
	// (healthy/unhealthy), lowercase when the step changed nothing,
	// uppercase when it flipped the state.
	tests := []struct {
		name       string
		start      bool // initially healthy
		rise, fall int
		steps      string
		want       string
	}{
		{"healthy stays on passes", true, 2, 2, "PPP", "hhh"},
		{"falls after two fails", true, 2, 2, "FFF", "hUu"},
		{"fails must be consecutive", true, 2, 2, "FPFPF", "hhhhh"},
		{"fall one", true, 1, 1, "FP", "UH"},
		{"rises after two passes", false, 2, 2, "PPP", "uHh"},
		{"passes must be consecutive", false, 2, 2, "PFPFP", "uuuuu"},
		{"full cycle", true, 3, 2, "FFPPFPPP", "hUuuuuuH"},
		{"fall three", true, 2, 3, "FFPFFF", "hhhhhU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := replicas(t, 1)[0]
			if !tt.start {
				r.SetInitial(time.Now(), errDown)
			}
			var got strings.Builder
			for _, s := range tt.steps {
				var err error
				if s == 'F' {
					err = errDown
				}
				changed := r.RecordCheck(time.Now(), err, tt.rise, tt.fall)
				c := map[bool]byte{true: 'h', false: 'u'}[r.Healthy()]
				if changed {
					c -= 'a' - 'A'
				}
				got.WriteByte(c)
				if h := r.Health(); h.Healthy != r.Healthy() {
					t.Fatalf("Health().Healthy = %v, Healthy() = %v", h.Healthy, r.Healthy())
				}
			}
			if got.String() != tt.want {
				t.Errorf("steps %s: got %s, want %s", tt.steps, got.String(), tt.want)
			}
		})
	}
}

func TestRecordCheckBookkeeping(t *testing.T) {
	r := replicas(t, 1)[0]
	t0 := time.Unix(1000, 0)
	r.RecordCheck(t0, errors.New("boom"), 2, 2)
	if h := r.Health(); !h.Healthy || h.LastError != "boom" || !h.CheckedAt.Equal(t0) || !h.ChangedAt.IsZero() {
		t.Errorf("after one fail: %+v", h)
	}
	t1 := t0.Add(time.Second)
	r.RecordCheck(t1, errors.New("boom2"), 2, 2)
	if h := r.Health(); h.Healthy || h.LastError != "boom2" || !h.ChangedAt.Equal(t1) {
		t.Errorf("after two fails: %+v", h)
	}
	t2 := t1.Add(time.Second)
	r.RecordCheck(t2, nil, 2, 2)
	if h := r.Health(); h.LastError != "boom2" || !h.ChangedAt.Equal(t1) || !h.CheckedAt.Equal(t2) {
		t.Errorf("one pass while unhealthy keeps the reason: %+v", h)
	}
	t3 := t2.Add(time.Second)
	r.RecordCheck(t3, nil, 2, 2)
	if h := r.Health(); !h.Healthy || h.LastError != "" || !h.ChangedAt.Equal(t3) {
		t.Errorf("after rising: %+v", h)
	}
}

func TestEject(t *testing.T) {
	r := replicas(t, 1)[0]
	t0 := time.Unix(1000, 0)
	if !r.Eject(t0, errors.New("connection refused")) {
		t.Error("Eject of a healthy replica reported it was not healthy")
	}
	h := r.Health()
	if h.Healthy || r.Healthy() || h.LastError != "passive: connection refused" || !h.ChangedAt.Equal(t0) {
		t.Errorf("after Eject: %+v", h)
	}
	if r.Eject(t0.Add(time.Second), errors.New("again")) {
		t.Error("second Eject reported the replica was healthy")
	}
	if h := r.Health(); !h.ChangedAt.Equal(t0) {
		t.Errorf("second Eject moved ChangedAt to %v", h.ChangedAt)
	}
	// Active checks bring it back after rise passes, counted from the
	// ejection: a pass before it does not count.
	r.RecordCheck(t0, nil, 2, 2)
	r.Eject(t0, errDown)
	if r.RecordCheck(t0, nil, 2, 2) || r.Healthy() {
		t.Fatal("one pass after Eject brought the replica back; want rise=2")
	}
	if !r.RecordCheck(t0, nil, 2, 2) || !r.Healthy() {
		t.Fatal("two passes after Eject did not bring the replica back")
	}
}

func TestSetInitial(t *testing.T) {
	tests := []struct {
		name      string
		start     bool // healthy before SetInitial
		err       error
		want      bool
		changedAt bool // ChangedAt set
	}{
		{"fail marks unhealthy at once", true, errDown, false, true},
		{"pass keeps healthy", true, nil, true, false},
		{"pass marks healthy at once", false, nil, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := replicas(t, 1)[0]
			if !tt.start {
				r.Eject(time.Unix(1, 0), errDown)
			}
			now := time.Unix(1000, 0)
			r.SetInitial(now, tt.err)
			h := r.Health()
			if h.Healthy != tt.want || !h.CheckedAt.Equal(now) || h.ChangedAt.Equal(now) != tt.changedAt {
				t.Errorf("after SetInitial(%v): %+v", tt.err, h)
			}
			if (h.LastError != "") != (tt.err != nil) {
				t.Errorf("LastError %q for err %v", h.LastError, tt.err)
			}
		})
	}
	// One more failure after an initial pass is not enough to fall with
	// fall=2: SetInitial resets the counters.
	r := replicas(t, 1)[0]
	r.RecordCheck(time.Now(), errDown, 2, 2)
	r.SetInitial(time.Now(), nil)
	if r.RecordCheck(time.Now(), errDown, 2, 2) || !r.Healthy() {
		t.Error("SetInitial did not reset the fail count")
	}
}

func TestPoolCounts(t *testing.T) {
	rs := setup(t, []bool{true, false, true}, []int64{1, 2, 3})
	p := &pool.Pool{Name: "blue", Model: "m", Replicas: rs}
	if n := p.HealthyCount(); n != 2 {
		t.Errorf("HealthyCount = %d, want 2", n)
	}
	if n := p.InFlight(); n != 6 {
		t.Errorf("InFlight = %d, want 6", n)
	}
	if n := (&pool.Pool{}).InFlight(); n != 0 {
		t.Errorf("empty pool InFlight = %d", n)
	}
}

func benchmarkPick(b *testing.B, p pool.Picker) {
	rs := replicas(b, 4)
	for i, r := range rs {
		for range i {
			r.Acquire()
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if p.Pick(rs, rs[3]) == nil {
			b.Fatal("Pick = nil")
		}
	}
}

func BenchmarkLeastOutstandingPick(b *testing.B) { benchmarkPick(b, pool.LeastOutstanding{}) }

func BenchmarkRoundRobinPick(b *testing.B) { benchmarkPick(b, &pool.RoundRobin{}) }

func TestPickDoesNotAllocate(t *testing.T) {
	rs := replicas(t, 4)
	for name, p := range map[string]pool.Picker{"least_outstanding": pool.LeastOutstanding{}, "round_robin": &pool.RoundRobin{}} {
		if n := testing.AllocsPerRun(100, func() { p.Pick(rs, rs[1]) }); n != 0 {
			t.Errorf("%s: %v allocs per Pick, want 0", name, n)
		}
	}
}
