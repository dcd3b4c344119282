package pool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// TestSetSettingsWhileChecking: new thresholds and path apply from the
// next check, and changing them while rounds run is race-free (-race).
func TestSetSettingsWhileChecking(t *testing.T) {
	f := newFakeReplica(t, models("m-1"))
	c := newChecker(pool.Target{Replica: f.replica, Model: "m-1"})
	c.Interval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.Run(ctx) })
	for i := range 50 {
		c.SetSettings(pool.Settings{Path: "/health", Interval: time.Millisecond, Timeout: 5 * time.Second, Rise: 1 + i%3, Fall: 1 + i%2})
	}
	cancel()
	wg.Wait()

	set := func(path string) {
		c.SetSettings(pool.Settings{Path: path, Interval: time.Second, Timeout: 5 * time.Second, Rise: 1, Fall: 1})
	}
	set("/health")
	c.Tick(context.Background())
	if !f.replica.Healthy() {
		t.Fatalf("unhealthy after a passing check with rise 1: %s", f.replica.Health().LastError)
	}
	// Fall 1: a single failed check marks it down; a bad path fails.
	set("/nope")
	c.Tick(context.Background())
	if f.replica.Healthy() {
		t.Fatalf("healthy after one failed check with fall 1 (path /nope)")
	}
	set("/health")
	c.Tick(context.Background())
	if !f.replica.Healthy() {
		t.Fatalf("unhealthy after one passing check with rise 1: %s", f.replica.Health().LastError)
	}
}
