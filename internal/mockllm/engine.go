package mockllm

// The engine's compute as one resource (Config.MaxBatchedTokens), the way
// vLLM's V1 scheduler spends it: one forward pass per step over a token
// budget, running requests first, so that a replica's prefills run one
// after the other, and a decoding sequence's next token comes with the end
// of the step in progress — a whole prefill for a prompt under the budget.
//
// Without it, each sequence sleeps its own prefill time, side by side with
// the others', and a prefill delays nobody else.

import (
	"sync"
	"time"
)

// computeTimeline books a replica's prefill compute.
type computeTimeline struct {
	chunk time.Duration // one step's prefill: MaxBatchedTokens × PrefillPerToken; > 0

	mu  sync.Mutex
	res []reservation // booked prefills in start order, none ended before the last look; guarded by mu
}

// reservation is one booked prefill: [start, end).
type reservation struct{ start, end time.Time }

// reserve books d of prefill compute from now on, after every prefill
// booked before it, and returns when it ends.
func (c *computeTimeline) reserve(now time.Time, d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	start := now
	if n := len(c.res); n > 0 && c.res[n-1].end.After(start) {
		start = c.res[n-1].end
	}
	end := start.Add(d)
	if d > 0 {
		c.res = append(c.res, reservation{start: start, end: end})
	}
	return end
}

// stepEnd returns when the step running at t ends: the end of the prefill
// chunk in progress then (a decoding sequence's token comes with it), or
// t when no prefill runs at t.
func (c *computeTimeline) stepEnd(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.res {
		if t.Before(r.start) {
			break
		}
		if t.Before(r.end) {
			end := r.start.Add((t.Sub(r.start)/c.chunk + 1) * c.chunk)
			if end.After(r.end) {
				end = r.end
			}
			return end
		}
	}
	return t
}

// pruneLocked drops the prefills that ended by now.
func (c *computeTimeline) pruneLocked(now time.Time) {
	i := 0
	for i < len(c.res) && !c.res[i].end.After(now) {
		i++
	}
	if i > 0 {
		c.res = append(c.res[:0], c.res[i:]...)
	}
}

// prefillWait returns how long a sequence that starts its prefill of
// uncached tokens now waits for its first token: the base TTFT plus its
// prefill, which with Config.MaxBatchedTokens starts only after the
// prefills booked before it.
func (s *Server) prefillWait(now time.Time, uncached int) time.Duration {
	if s.compute == nil {
		return s.prefillDelay(uncached)
	}
	work := s.cfg.PrefillPerToken * time.Duration(uncached)
	return s.compute.reserve(now, work).Sub(now) + time.Duration(s.faults.ttft.Load())
}

// decodeWait returns how long a running sequence waits from now for its
// next n tokens (decodeDelay each), and, with Config.MaxBatchedTokens, for
// the end of the prefill step in progress when they are due.
func (s *Server) decodeWait(now time.Time, n int) time.Duration {
	d := s.decodeDelay(s.running.Load()) * time.Duration(n)
	if s.compute == nil {
		return d
	}
	return s.compute.stepEnd(now.Add(d)).Sub(now)
}
