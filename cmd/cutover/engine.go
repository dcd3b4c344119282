package main

import (
	"fmt"

	"github.com/cutover-dev/cutover/api"
)

// engineLine is a replica's engine load for `cutover status` (balancer: llm):
// its batch is "batch N" while the engine was seen queueing lately (N is
// taken as its limit), "batch ≥N" otherwise (the most seen running so far).
func engineLine(e *api.EngineMetrics) string {
	batch := "≥"
	if e.BatchKnown {
		batch = ""
	}
	return fmt.Sprintf("\tqueue %.0f, running %.0f, batch %s%.0f, KV %.0f%%, prefix hits %.0f%%",
		e.Waiting, e.Running, batch, e.Batch, 100*e.KVCacheUsage, 100*e.PrefixCacheHitRate)
}

// gatewayQueueLine is a pool's gateway queue for `cutover status`.
func gatewayQueueLine(q *api.GatewayQueue) string {
	mean := 0.0
	if done := q.Held - uint64(q.Waiting); done > 0 {
		mean = 1000 * q.WaitSeconds / float64(done)
	}
	return fmt.Sprintf("  gateway queue: %d waiting; %d held (mean wait %.0f ms): %d dispatched, %d timed out, %d canceled; %d overflowed",
		q.Waiting, q.Held, mean, q.Dispatched, q.TimedOut, q.Canceled, q.Overflowed)
}
