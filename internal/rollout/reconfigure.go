package rollout

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/secret"
)

// hookSpecs are the hooks configured for event now.
func (c *Controller) hookSpecs(event string) []hook.Spec { return (*c.specs.Load())[event] }

// SetHooks replaces the configured hooks (a configuration reload). Hooks
// already running finish; events from now on, and events recorded as
// pending whose hooks have not started, run the new ones.
func (c *Controller) SetHooks(hooks map[string][]hook.Spec) {
	h := maps.Clone(hooks)
	c.specs.Store(&h)
}

// SetPools replaces the pools as configured (a configuration reload) and
// applies them the way a deployment's change of the pools is applied: a
// pool the state holds no spec for (no deployment ever set it) gets the
// new replicas, model and key file; replicas that stay keep their health
// and in-flight requests, new ones (and kept ones under a new model) are
// checked at once (Options.CheckNew), removed ones finish what they
// serve. A pool a deployment set keeps the state's spec (only a key file
// it inherits from the configuration changes), and so does, in model and
// replicas, the pool a promoted deployment retains for rollback until it
// is retired. owned names those pools, sorted. An Applier that refuses the new table (an external load
// balancer) leaves the previous pools in place, and the error says so.
//
// The configured pools are this gateway's alone: in a fleet, each gateway
// serves an unowned pool from its own configuration file.
func (c *Controller) SetPools(ctx context.Context, pools map[string]PoolSpec) (owned []string, err error) {
	next := maps.Clone(pools)
	if err := c.liveStillServes(ctx, next); err != nil {
		return nil, err
	}
	c.mu.Lock()
	prev := c.configured.Load()
	if held := c.retainedLocked(); held != "" {
		// The pool kept for rollback keeps what it served: a rollback
		// brings back the version that was live, not the file's.
		if old, ok := (*prev)[held]; ok {
			spec := next[held]
			spec.Model, spec.Replicas = old.Model, old.Replicas
			next[held] = spec
		}
		owned = append(owned, held)
	}
	if err := poolsConflict(c.st, c.rev, next); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.configured.Store(&next)
	before := maps.Clone(c.pools)
	for name := range next {
		if _, ok := c.st.Pools[name]; ok {
			owned = append(owned, name)
		}
	}
	c.rebuildPoolsLocked()
	// Replicas kept under another model are checked at once against it.
	var recheck []*pool.Replica
	changed := false
	for name, p := range c.pools {
		changed = changed || before[name] != p
		if old := before[name]; old != nil && old.Model != p.Model {
			for _, r := range p.Replicas {
				if slices.Contains(old.Replicas, r) {
					recheck = append(recheck, r)
				}
			}
		}
	}
	c.mu.Unlock()
	slices.Sort(owned)
	if !changed {
		return owned, nil
	}
	if err := c.apply(ctx); err != nil {
		// The previous pools come back with their own replicas (health,
		// in-flight counts): a rebuild alone would make new, unchecked
		// ones of those the refused pools left out.
		c.mu.Lock()
		c.configured.Store(prev)
		for name, p := range before {
			c.pools[name] = p
		}
		c.rebuildPoolsLocked() // a no-op unless a transition came in between
		c.mu.Unlock()
		if err := c.apply(ctx); err != nil {
			c.log.Error("re-applying the previous pools failed too", "error", err)
		}
		return owned, &Refusal{Code: "apply_failed", Status: http.StatusBadGateway,
			Reason: fmt.Sprintf("the load balancer did not take the configured pools, nothing changed: %v", err)}
	}
	// Checked against their new model once it is in effect (a refused
	// reload leaves them serving the old one).
	if len(recheck) > 0 && c.opts.CheckNew != nil {
		c.opts.CheckNew(recheck)
	}
	return owned, nil
}

// retainedLocked names the pool a promoted deployment retains for
// rollback (until it is retired) when no deployment set its spec: the
// configuration's pool, which a reload must not change meanwhile. ""
// when there is none.
func (c *Controller) retainedLocked() string {
	d := c.st.active()
	if d == nil || (d.Phase != PhasePromoted && d.Phase != PhaseRetiring) || d.From == "" {
		return ""
	}
	if _, set := c.st.Pools[d.From]; set {
		return ""
	}
	return d.From
}

// liveStillServes refuses configured pools that change the live pool (one
// no deployment owns, with a healthy replica now: its model, replicas or
// key) so that none of its replicas answers a fresh check listing its
// model: applied, such a reload (a typo in the model id, replicas not
// started yet, a key the replicas do not take) would answer every request
// 503. A live pool with no healthy replica now is not held
// to it: the change cannot make that worse, and may be the repair.
func (c *Controller) liveStillServes(ctx context.Context, configured map[string]PoolSpec) error {
	c.mu.Lock()
	live, rev := c.st.Live, c.rev
	_, owned := c.st.Pools[live]
	cur := c.pools[live]
	c.mu.Unlock()
	spec, ok := configured[live]
	if owned || !ok || cur == nil || c.opts.Prober == nil || len(spec.Replicas) == 0 || cur.HealthyCount() == 0 {
		return nil // an empty live pool is poolsConflict's
	}
	auth := ""
	if spec.APIKeyFile != "" {
		if key, err := c.readKey(spec.APIKeyFile); err == nil {
			auth = secret.Bearer(key)
		}
	}
	if cur.Model == spec.Model && sameURLs(cur, spec.Replicas) && sameAuth(cur, auth) {
		return nil
	}
	var rs []*pool.Replica
	var reasons []string
	for _, raw := range spec.Replicas {
		u, err := url.Parse(raw)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", raw, err))
			continue
		}
		r := pool.NewReplica(u)
		r.Authorization = auth
		rs = append(rs, r)
	}
	for i, err := range c.probeAll(ctx, rs, spec.Model) {
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", rs[i].Name, err))
	}
	key := "pools." + live + ".replicas"
	switch {
	case spec.Model != cur.Model:
		key = "pools." + live + ".model"
	case sameURLs(cur, spec.Replicas):
		key = "pools." + live + ".api_key_file"
	}
	return &PoolsConflictError{Key: key, Reason: fmt.Sprintf(
		"%s is the live pool (revision %d) and none of its replicas would serve model %q (%s); nothing changed: fix the value, or make the other pool live first",
		live, rev, spec.Model, strings.Join(reasons, "; "))}
}

// OwnKeyFile reports whether the deployment that set pool name named a
// key file of its own (DeployRequest.APIKeyFile): then the pool's
// configured api_key_file does not apply to it. False for a pool no
// deployment set.
func (c *Controller) OwnKeyFile(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	spec, ok := c.st.Pools[name]
	return ok && spec.APIKeyFile != ""
}

// PoolsConflictError is configured pools that do not fit the state: the
// live pool, which no deployment set, left without a replica (the
// configuration's live names only the first start's pool, so its own
// validation takes it for the standby) or, on a reload, changed so that
// no replica of it passes a check while it has a healthy one now, or a
// replica that a deployment put in the other pool.
type PoolsConflictError struct {
	// Key is the configuration key at fault, such as pools.green.replicas.
	Key string
	// Reason says why.
	Reason string
}

func (e *PoolsConflictError) Error() string { return e.Key + ": " + e.Reason }

// poolsConflict checks configured pools against st: those a deployment
// set keep the state's spec, the others take the configuration's, and the
// result must leave the live pool a replica and list no replica twice.
func poolsConflict(st State, rev int64, configured map[string]PoolSpec) error {
	for _, name := range slices.Sorted(maps.Keys(configured)) {
		if _, owned := st.Pools[name]; owned {
			continue
		}
		spec := configured[name]
		if name == st.Live && len(spec.Replicas) == 0 {
			return &PoolsConflictError{Key: "pools." + name + ".replicas", Reason: fmt.Sprintf(
				"no replica, but %s is the live pool (revision %d; the configuration's live names only the first start's): give it one, or make the other pool live first", name, rev)}
		}
		for i, r := range spec.Replicas {
			for other, o := range st.Pools {
				if other == name {
					continue
				}
				if slices.ContainsFunc(o.Replicas, func(u string) bool { return pool.ReplicaKey(u) == pool.ReplicaKey(r) }) {
					return &PoolsConflictError{Key: fmt.Sprintf("pools.%s.replicas[%d]", name, i), Reason: fmt.Sprintf(
						"%s is a replica of pool %s, which deployment %s set (revision %d): a replica serves one pool", r, other, o.SetBy, rev)}
				}
			}
		}
	}
	return nil
}
