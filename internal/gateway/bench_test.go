package gateway_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkAddedLatency measures what the gateway adds to a small
// non-streamed completion: requests alternate between the replica itself
// and the gateway in front of it (same client, same run), and the
// reported metrics are the p50/p99 of each and their difference.
func BenchmarkAddedLatency(b *testing.B) {
	e := newBenchEnv(b)
	body := `{"model":"model-v1","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`
	do := func(base string) time.Duration {
		start := time.Now()
		resp, err := e.http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	direct := e.pools["blue"][0].URL()
	for range 200 { // warm connections on both paths
		do(direct)
		do(e.traffic)
	}
	var dd, gd []time.Duration
	b.ResetTimer()
	for range b.N {
		dd = append(dd, do(direct))
		gd = append(gd, do(e.traffic))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(dd, .5).Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64(percentile(dd, .99).Microseconds()), "direct-p99-µs")
	b.ReportMetric(float64(percentile(gd, .5).Microseconds()), "gateway-p50-µs")
	b.ReportMetric(float64(percentile(gd, .99).Microseconds()), "gateway-p99-µs")
	b.ReportMetric(float64((percentile(gd, .5) - percentile(dd, .5)).Microseconds()), "added-p50-µs")
	b.ReportMetric(float64((percentile(gd, .99) - percentile(dd, .99)).Microseconds()), "added-p99-µs")
}

// BenchmarkSwitchPropagation promotes while 32 clients send requests and
// reports how long after the promote call returned a request could still
// start and land on the old pool (0 or less: none could).
func BenchmarkSwitchPropagation(b *testing.B) {
	e := newBenchEnv(b)
	body := `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	var worst time.Duration = -time.Hour
	for range b.N {
		var (
			stop     atomic.Bool
			wg       sync.WaitGroup
			mu       sync.Mutex
			returned time.Time
			lastOld  time.Time
			oldPool  = e.gw.Controller().Status().Live
		)
		for range 32 {
			wg.Go(func() {
				for !stop.Load() {
					start := time.Now()
					resp, err := e.http.Post(e.traffic+"/v1/chat/completions", "application/json", strings.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.Header.Get("X-Cutover-Pool") == oldPool {
						mu.Lock()
						if start.After(lastOld) {
							lastOld = start
						}
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(50 * time.Millisecond) // let load build up (benchmark, not a test)
		if _, err := e.admin.Promote(context.Background()); err != nil {
			b.Fatal(err)
		}
		returned = time.Now()
		time.Sleep(50 * time.Millisecond)
		stop.Store(true)
		wg.Wait()
		if d := lastOld.Sub(returned); d > worst {
			worst = d
		}
	}
	b.ReportMetric(float64(worst.Microseconds()), "last-old-start-after-return-µs")
}

func newBenchEnv(b *testing.B) *env {
	return newEnv(b, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 8}})
}
