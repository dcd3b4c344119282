// Package driver holds the drivers of external load balancers (nginx,
// HAProxy): each applies a routing table to its load balancer, verifies
// through it that new requests reach the live pool, and puts the last good
// configuration back when anything fails.
package driver

import (
	"context"
	"time"

	"github.com/cutover-dev/cutover/internal/route"
)

// Driver makes an external load balancer serve a routing table.
type Driver interface {
	// Apply makes t's live pool receive every new request, with t's
	// unhealthy replicas out, and verifies it through the load balancer.
	// On error the load balancer serves what it served before (the driver
	// restored it) and the error says what failed.
	Apply(ctx context.Context, t *route.Table) error
	// Sync re-applies the last table applied when the health of its
	// replicas changed since; it does nothing otherwise. Callers run it
	// periodically: it is the driver's one tick.
	Sync(ctx context.Context) error
	// Live asks the load balancer which pool it serves now.
	Live(ctx context.Context) (string, error)
}

// backoff remembers the last change a load balancer refused, so that a
// periodic Sync does not retry the same refused change on every tick.
type backoff struct {
	key string    // what was refused: rendered file or state signature
	at  time.Time // when
}

// skip reports whether key was refused less than wait ago.
func (b *backoff) skip(key string, now time.Time, wait time.Duration) bool {
	return b.key == key && now.Sub(b.at) < wait
}

// refused records that key was refused at now; "" clears the record.
func (b *backoff) refused(key string, now time.Time) { b.key, b.at = key, now }

// defaultRetry is how long Sync waits before retrying a refused change.
const defaultRetry = 30 * time.Second

// defaultDriftEvery is how often Sync asks the load balancer whether it
// still serves the table applied (see NginxOptions.DriftEvery).
const defaultDriftEvery = 10 * time.Second

// driftClock says when Sync next looks for drift.
type driftClock struct {
	every time.Duration // <= 0: never
	last  time.Time
	// wait is how long after a repair that failed the next look comes:
	// every, doubled by each repair that fails in a row (a load balancer
	// that cannot take the table is not reloaded every few seconds), at
	// most maxDriftWait; 0 after a repair or apply that worked.
	wait time.Duration
}

// maxDriftWait bounds driftClock.wait.
const maxDriftWait = 10 * time.Minute

// due reports whether a look is due at now, and if so counts it as done.
func (d *driftClock) due(now time.Time) bool {
	if d.every <= 0 || now.Sub(d.last) < max(d.every, d.wait) {
		return false
	}
	d.last = now
	return true
}

// repaired records how a repair went at now.
func (d *driftClock) repaired(ok bool, now time.Time) {
	d.last = now
	switch {
	case ok:
		d.wait = 0
	case d.wait == 0:
		d.wait = 2 * d.every
	default:
		d.wait = min(2*d.wait, maxDriftWait)
	}
}

// driftEvery is o's DriftEvery with its default.
func driftEvery(o time.Duration) time.Duration {
	if o == 0 {
		return defaultDriftEvery
	}
	return o
}
