package gateway_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// BenchmarkFleetPropagation measures, with three gateways on one embedded
// etcd over loopback, the time from a switch call's return (promote and
// rollback alternately, each on another gateway) until the last gateway
// answers a new request from the new pool. Each gateway is probed with
// back-to-back requests, so the figure includes one request's latency.
// Reported: p50, p99 and max of that time per switch.
func BenchmarkFleetPropagation(b *testing.B) {
	f := newFleet(b, 3)
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		caller := f.gws[i%3].admin
		call := caller.Promote
		if i%2 == 1 {
			call = caller.Rollback
		}
		res, err := call(ctx)
		if err != nil {
			b.Fatalf("switch %d: %v", i, err)
		}
		returned := time.Now()
		var mu sync.Mutex
		var worst time.Duration
		var wg sync.WaitGroup
		for _, e := range f.gws {
			wg.Go(func() {
				for n := 0; n < 100000; n++ {
					r, err := e.chat(ctx, "", "p", false, "")
					if err == nil && r.status == http.StatusOK && r.pool == res.Live {
						break
					}
				}
				d := time.Since(returned)
				mu.Lock()
				worst = max(worst, d)
				mu.Unlock()
			})
		}
		wg.Wait()
		lat = append(lat, worst)
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max_ms")
}
