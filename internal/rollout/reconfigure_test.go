package rollout

import (
	"errors"
	"slices"
	"testing"

	"github.com/cutover-dev/cutover/internal/hook"
	"github.com/cutover-dev/cutover/internal/pool"
)

// TestSetPools: a reload's pools take the path of a deployment's change:
// an unowned pool gets its new replicas at once in a new table, a kept
// replica keeps its Replica (health, in-flight count), an added one is
// handed to CheckNew; a pool a deployment set keeps the state's spec and
// is reported as owned; a refused table leaves the previous pools.
func TestSetPools(t *testing.T) {
	var checked []*pool.Replica
	f := newFx(t, func(o *Options) { o.CheckNew = func(rs []*pool.Replica) { checked = append(checked, rs...) } })
	kept := f.c.Pool("green").Replicas[0]
	owned, err := f.c.SetPools(f.ctx, map[string]PoolSpec{
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2", "http://127.0.0.1:4"}},
	})
	if err != nil || len(owned) != 0 {
		t.Fatalf("SetPools = %v, %v", owned, err)
	}
	green := f.ap.last().Pools["green"].Pool
	if len(green.Replicas) != 2 || green.Replicas[0] != kept || green.Replicas[1].Name != "http://127.0.0.1:4" {
		t.Fatalf("green in the applied table: %+v", green.Replicas)
	}
	if len(checked) != 1 || checked[0] != green.Replicas[1] {
		t.Errorf("CheckNew got %v, want the added replica only", checked)
	}

	tables := len(f.ap.tables)
	if _, err := f.c.SetPools(f.ctx, map[string]PoolSpec{ // the same again: no new table
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2", "http://127.0.0.1:4"}},
	}); err != nil || len(f.ap.tables) != tables {
		t.Errorf("unchanged pools: %v, %d tables applied, want none", err, len(f.ap.tables)-tables)
	}

	f.deploy(false) // green is the deployment's from now on
	owned, err = f.c.SetPools(f.ctx, map[string]PoolSpec{
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:5"}},
	})
	if err != nil || !slices.Equal(owned, []string{"green"}) {
		t.Fatalf("SetPools over a deployed pool = %v, %v", owned, err)
	}
	if g := f.c.Pool("green"); len(g.Replicas) != 1 || g.Replicas[0].Name != newReplica {
		t.Errorf("the deployed pool changed: %+v", g.Replicas)
	}

	f.ap.mu.Lock()
	f.ap.fail = errors.New("nginx -s reload: exit 1")
	f.ap.mu.Unlock()
	_, err = f.c.SetPools(f.ctx, map[string]PoolSpec{
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1", "http://127.0.0.1:6"}},
		"green": {Model: "m2"},
	})
	refused(t, err, "apply_failed", "nothing changed")
	if b := f.c.Pool("blue"); len(b.Replicas) != 1 {
		t.Errorf("blue after a refused table: %+v, want its previous replica", b.Replicas)
	}
}

// TestSetHooks: hooks set by a reload run for the events from then on.
func TestSetHooks(t *testing.T) {
	f := newFx(t, nil)
	f.c.SetHooks(map[string][]hook.Spec{"on_deploy": {{Command: []string{"true"}}, {Command: []string{"true"}}}})
	f.deploy(false)
	f.until(PhaseReady)
	f.hooks.mu.Lock()
	defer f.hooks.mu.Unlock()
	if !slices.Equal(f.hooks.runs, []string{"on_deploy:green", "on_deploy:green"}) {
		t.Errorf("hook runs %q, want the two new on_deploy hooks and nothing else", f.hooks.runs)
	}
}
