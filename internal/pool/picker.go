package pool

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
)

// Picker chooses one healthy replica of rs for a request, never skip (the
// replica that just failed, or nil). It returns nil when none is healthy.
// Implementations must be safe for concurrent use and should not allocate.
type Picker interface {
	Pick(rs []*Replica, skip *Replica) *Replica
}

// NewPicker returns the picker named by a config balancer value.
func NewPicker(name string) (Picker, error) {
	switch name {
	case "", "least_outstanding":
		return LeastOutstanding{}, nil
	case "round_robin":
		return &RoundRobin{}, nil
	case "llm":
		return NewLLM(LLMOptions{}), nil
	}
	return nil, fmt.Errorf("unknown balancer %q", name)
}

// LeastOutstanding picks two healthy replicas at random and takes the one
// with fewer requests in flight (power of two random choices). With long
// LLM generations of uneven length this beats round-robin, and unlike a
// global least-loaded scan it does not herd every request onto the same
// replica after a change. Recent failures weigh: a replica that fails
// every request at once has nothing in flight, and would otherwise draw
// the traffic (see load).
type LeastOutstanding struct{}

// Pick implements Picker.
func (LeastOutstanding) Pick(rs []*Replica, skip *Replica) *Replica {
	n := 0
	for _, r := range rs {
		if r != skip && r.Healthy() {
			n++
		}
	}
	if n < 2 {
		return nthHealthy(rs, skip, 0)
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	// Health may change between the count and these lookups (checks and
	// ejections run concurrently), so either may come back nil.
	a, b := nthHealthy(rs, skip, i), nthHealthy(rs, skip, j)
	switch {
	case a == nil && b == nil:
		return nthHealthy(rs, skip, 0)
	case a == nil:
		return b
	case b != nil && load(b) < load(a):
		return b
	}
	return a
}

// load is what LeastOutstanding compares: the requests in flight, plus one,
// doubled for every recent failure in a row (up to 2^maxPenalty; see
// Replica.penalty), so that after a few instant failures a replica loses
// to any loaded one that answers, until its next try.
func load(r *Replica) int64 {
	return (r.InFlight() + 1) << min(r.penalty(), maxPenalty)
}

// maxPenalty bounds load's doubling (2^16: more than any replica's load).
const maxPenalty = 16

func nthHealthy(rs []*Replica, skip *Replica, n int) *Replica {
	for _, r := range rs {
		if r != skip && r.Healthy() {
			if n == 0 {
				return r
			}
			n--
		}
	}
	return nil
}

// RoundRobin cycles through the healthy replicas in order.
type RoundRobin struct {
	next atomic.Uint64
}

// Pick implements Picker.
func (rr *RoundRobin) Pick(rs []*Replica, skip *Replica) *Replica {
	if len(rs) == 0 {
		return nil
	}
	// Advance the counter past every replica passed over, so that the
	// next Pick starts after the one returned: an unavailable replica's
	// turns spread over the others instead of all going to its successor.
	for range len(rs) {
		r := rs[(rr.next.Add(1)-1)%uint64(len(rs))]
		if r != skip && r.Healthy() {
			return r
		}
	}
	// Concurrent picks advance the counter too, so the turns this one
	// took may all have landed on unavailable replicas: never answer
	// "none" while one is available.
	return nthHealthy(rs, skip, 0)
}

var (
	_ Picker = LeastOutstanding{}
	_ Picker = (*RoundRobin)(nil)
)
