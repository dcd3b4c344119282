package route

import (
	"fmt"
	"testing"

	"github.com/cutover-dev/cutover/internal/pool"
)

func canaryTable(weight int) *Table {
	t := New(1, "blue", "", &pool.Pool{Name: "blue", Model: "m1"}, &pool.Pool{Name: "green", Model: "m2"})
	t.Canary, t.CanaryWeight = t.Pools["green"], weight
	return t
}

// TestPickWithExactShares: over every bucket the canary gets exactly its
// weight, for each weight.
func TestPickWithExactShares(t *testing.T) {
	for _, w := range []int{0, 1, 5, 20, 25, 50, 99, 100} {
		tb := canaryTable(w)
		n := 0
		for x := range uint64(10000) {
			if tb.PickWith(x) == tb.Canary {
				n++
			}
		}
		if n != w*100 {
			t.Errorf("weight %d: canary picked %d of 10000, want %d", w, n, w*100)
		}
	}
}

// TestPickWeights: at 0 and 100 Pick is exact; at 20 % the share of a
// few thousand random picks is within a binomial margin (5 sigma).
func TestPickWeights(t *testing.T) {
	const n = 4000
	for _, tt := range []struct{ weight, lo, hi int }{{0, 0, 0}, {100, n, n}, {20, 800 - 127, 800 + 127}} {
		tb := canaryTable(tt.weight)
		got := 0
		for range n {
			if tb.Pick("") == tb.Canary {
				got++
			}
		}
		if got < tt.lo || got > tt.hi {
			t.Errorf("weight %d: canary picked %d of %d, want %d..%d", tt.weight, got, n, tt.lo, tt.hi)
		}
	}
	if tb := New(1, "blue", "", &pool.Pool{Name: "blue"}); tb.Pick("k") != tb.Live || tb.Weights()["blue"] != 100 {
		t.Fatalf("outside a canary every request goes to the live pool: %v", tb.Weights())
	}
	if w := canaryTable(25).Weights(); w["blue"] != 75 || w["green"] != 25 {
		t.Fatalf("weights = %v", w)
	}
}

// TestPickAffinity: a key always picks the same pool while the weight
// holds; raising the weight only moves keys from live to canary; the
// keys' share follows the weight.
func TestPickAffinity(t *testing.T) {
	const keys = 5000
	prev := map[string]bool{}
	for _, w := range []int{5, 25, 50, 90} {
		tb := canaryTable(w)
		onCanary := 0
		for i := range keys {
			k := fmt.Sprintf("session-%d", i)
			c := tb.Pick(k) == tb.Canary
			for range 3 {
				if (tb.Pick(k) == tb.Canary) != c {
					t.Fatalf("weight %d: key %s changed version while the weight held", w, k)
				}
			}
			if prev[k] && !c {
				t.Fatalf("raising the weight to %d moved key %s back from canary to live", w, k)
			}
			prev[k] = c
			if c {
				onCanary++
			}
		}
		if want := keys * w / 100; onCanary < want-300 || onCanary > want+300 {
			t.Errorf("weight %d: %d of %d keys on the canary, want about %d", w, onCanary, keys, want)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	tb := canaryTable(25)
	b.ReportAllocs()
	for b.Loop() {
		_ = tb.Pick("")
	}
}
