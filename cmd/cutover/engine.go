package main

import (
	"fmt"

	"github.com/cutover-dev/cutover/api"
)

// engineLine is a replica's engine load for `cutover status` (balancer: llm).
func engineLine(e *api.EngineMetrics) string {
	return fmt.Sprintf("\tqueue %.0f, running %.0f, KV %.0f%%, prefix hits %.0f%%",
		e.Waiting, e.Running, 100*e.KVCacheUsage, 100*e.PrefixCacheHitRate)
}
