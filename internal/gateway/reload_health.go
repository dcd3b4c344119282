package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
)

// liveHealthStillPasses refuses new health check settings (health.path,
// health.timeout: the keys of changed that decide a check's outcome)
// under which no replica of the live pool passes a check while one
// passes now: applied, the next rounds would take every one out of
// rotation (a typo in health.path, a timeout too short) and every request
// would get 503. A live pool with no healthy replica now is not held to
// it: the change cannot make that worse.
func (g *Gateway) liveHealthStillPasses(ctx context.Context, h config.Health, changed []string) error {
	var keys []string
	for _, k := range []string{"health.path", "health.timeout"} {
		if slices.Contains(changed, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	live := g.ctrl.Status().Live
	p := g.ctrl.Pool(live)
	if p == nil || p.HealthyCount() == 0 {
		return nil
	}
	probe := &pool.Checker{Client: g.checker.Client, Path: h.Path, Timeout: h.Timeout.D()}
	errs := pool.CheckEach(ctx, p.Replicas, func(ctx context.Context, r *pool.Replica) error { return probe.Probe(ctx, r, p.Model) })
	reasons := make([]string, 0, len(errs))
	for i, err := range errs {
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", p.Replicas[i].Name, err))
	}
	return &config.Error{Fields: []*config.FieldError{{Key: keys[0], Msg: fmt.Sprintf(
		"no replica of the live pool %s would pass its health check (%s) while one passes now; nothing changed", live, strings.Join(reasons, "; "))}}}
}
