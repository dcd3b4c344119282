package rollout

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
)

// TestSetPoolsKeepsTheLivePoolServing: a reload that changes the live
// pool (no deployment owns it) so that none of its replicas passes a
// check is refused naming the key, and the live pool keeps its model and
// replicas. Regression: a typo in pools.blue.model while blue was live
// was applied, every replica failed its next check and every request got
// 503 no_healthy_replica.
func TestSetPoolsKeepsTheLivePoolServing(t *testing.T) {
	const live, spare = "http://127.0.0.1:1", "http://127.0.0.1:7"
	for _, tc := range []struct {
		name      string
		blue      PoolSpec
		fail      []string // replicas whose checks fail
		liveDown  bool     // blue has no healthy replica before the reload
		wantKey   string   // "": applied
		wantModel string
	}{
		{name: "model typo", blue: PoolSpec{Model: "m1-typo", Replicas: []string{live}}, fail: []string{live},
			wantKey: "pools.blue.model", wantModel: "m1"},
		{name: "replicas not up", blue: PoolSpec{Model: "m1", Replicas: []string{spare}}, fail: []string{spare},
			wantKey: "pools.blue.replicas", wantModel: "m1"},
		{name: "one replica serves", blue: PoolSpec{Model: "m1-new", Replicas: []string{live, spare}}, fail: []string{live},
			wantModel: "m1-new"},
		{name: "live pool already down", blue: PoolSpec{Model: "m1", Replicas: []string{spare}}, fail: []string{spare}, liveDown: true,
			wantModel: "m1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, nil)
			if tc.liveDown {
				f.c.Pool("blue").Replicas[0].SetInitial(time.Now(), errors.New("connection refused"))
			}
			for _, r := range tc.fail {
				f.prober.set(r, errors.New("model not listed"))
			}
			before := f.c.Pool("blue")
			_, err := f.c.SetPools(f.ctx, map[string]PoolSpec{
				"blue":  tc.blue,
				"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
			})
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("SetPools: %v, want it applied", err)
				}
				if got := f.c.Pool("blue"); got.Model != tc.blue.Model || len(got.Replicas) != len(tc.blue.Replicas) {
					t.Fatalf("blue after the reload: model %s, %d replicas, want %s, %d", got.Model, len(got.Replicas), tc.blue.Model, len(tc.blue.Replicas))
				}
				return
			}
			var pc *PoolsConflictError
			if !errors.As(err, &pc) || pc.Key != tc.wantKey || !strings.Contains(pc.Reason, "live pool") || !strings.Contains(pc.Reason, "model not listed") {
				t.Fatalf("SetPools: %v, want a PoolsConflictError on %s naming the failed checks", err, tc.wantKey)
			}
			if got := f.c.Pool("blue"); got != before || got.Model != tc.wantModel {
				t.Fatalf("blue after a refused reload: %+v, want the pool it had", got)
			}
		})
	}
}

// keyProber passes a replica only with the key good.
type keyProber struct{}

func (keyProber) Probe(_ context.Context, r *pool.Replica, _ string) error {
	if r.Authorization != "Bearer good" {
		return errors.New("status 401")
	}
	return nil
}

// TestSetPoolsKeepsTheLiveKey: a reload that gives the live pool a key
// file whose key its replicas refuse is refused naming
// pools.<pool>.api_key_file; the right key is applied.
func TestSetPoolsKeepsTheLiveKey(t *testing.T) {
	keys := map[string]string{"/good": "good", "/bad": "bad"}
	f := newFx(t, func(o *Options) {
		o.Prober = keyProber{}
		o.ReadKey = func(file string) (string, error) { return keys[file], nil }
		o.Pools = map[string]PoolSpec{
			"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}, APIKeyFile: "/good"},
			"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
		}
	})
	green := PoolSpec{Model: "m2", Replicas: []string{"http://127.0.0.1:2"}}
	_, err := f.c.SetPools(f.ctx, map[string]PoolSpec{"blue": {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}, APIKeyFile: "/bad"}, "green": green})
	var pc *PoolsConflictError
	if !errors.As(err, &pc) || pc.Key != "pools.blue.api_key_file" {
		t.Fatalf("SetPools with a key the live replicas refuse: %v, want a PoolsConflictError on pools.blue.api_key_file", err)
	}
	if got := f.c.Pool("blue").Replicas[0].Authorization; got != "Bearer good" {
		t.Fatalf("blue's key after a refused reload: %q, want the one it had", got)
	}
	keys["/good2"] = "good"
	if _, err := f.c.SetPools(f.ctx, map[string]PoolSpec{"blue": {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}, APIKeyFile: "/good2"}, "green": green}); err != nil {
		t.Fatalf("SetPools with a key the replicas take: %v", err)
	}
}

// TestSetPoolsKeepsTheRetainedPool: while a promoted deployment retains
// the configuration's old pool for rollback, a reload leaves that pool's
// model and replicas as they were and names it owned; a rollback brings
// back what was live. Regression: the reload was applied, so a rollback
// made live a model nobody had promoted (or was refused, the retained
// pool broken, while status still promised it).
func TestSetPoolsKeepsTheRetainedPool(t *testing.T) {
	f := newFx(t, nil)
	f.deploy(false)
	f.until(PhaseReady)
	if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	owned, err := f.c.SetPools(f.ctx, map[string]PoolSpec{
		"blue":  {Model: "m9", Replicas: []string{"http://127.0.0.1:9"}},
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(owned, []string{"blue", "green"}) {
		t.Errorf("owned %q, want blue (retained) and green (the deployment's)", owned)
	}
	if b := f.c.Pool("blue"); b.Model != "m1" || len(b.Replicas) != 1 || b.Replicas[0].Name != "http://127.0.0.1:1" {
		t.Fatalf("retained blue after a reload: model %s, replicas %v; want m1 on http://127.0.0.1:1", b.Model, b.Replicas)
	}
	if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil {
		t.Fatal(err)
	}
	if b := f.c.Pool("blue"); b.Model != "m1" {
		t.Fatalf("blue live again after the rollback serves %s, want m1", b.Model)
	}
	// No longer retained: the next reload applies.
	if _, err := f.c.SetPools(f.ctx, map[string]PoolSpec{
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1", "http://127.0.0.1:9"}},
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
	}); err != nil {
		t.Fatal(err)
	}
	if b := f.c.Pool("blue"); len(b.Replicas) != 2 {
		t.Fatalf("live blue after a reload: %d replicas, want 2", len(b.Replicas))
	}
}

// TestRestartKeepsTheRetainedPool: a gateway restarted during the
// retention with a configuration that changed the retained pool (the
// operator edited the file after the promotion) keeps the pool as it was
// promoted away from, as a reload does: a rollback brings back what was
// live. Regression: the restart took the file's model and replicas, so a
// rollback made live a version nobody had promoted. A file that moved the
// new version's replicas into the old pool, to describe what now runs,
// does not keep the gateway from starting either. The same model on
// other replicas is the file's: in a fleet each gateway may list its own.
func TestRestartKeepsTheRetainedPool(t *testing.T) {
	promoted := []string{"http://127.0.0.1:1", "http://127.0.0.1:5"}
	for _, tc := range []struct {
		name string
		blue PoolSpec
		want []string
	}{
		{"other replicas and model", PoolSpec{Model: "m9", Replicas: []string{"http://127.0.0.1:9"}}, promoted},
		{"the new version's replicas", PoolSpec{Model: "m3", Replicas: []string{newReplica}}, promoted},
		{"the same model on other replicas", PoolSpec{Model: "m1", Replicas: []string{"http://127.0.0.1:8"}}, []string{"http://127.0.0.1:8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, nil)
			// Between deploy and promote a reload changed the live pool:
			// the retained pool is what was live at the promotion.
			f.deploy(false)
			if _, err := f.c.SetPools(f.ctx, map[string]PoolSpec{
				"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1", "http://127.0.0.1:5"}},
				"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
			}); err != nil {
				t.Fatal(err)
			}
			f.until(PhaseReady)
			if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
				t.Fatal(err)
			}
			f.opts.Pools = map[string]PoolSpec{"blue": tc.blue, "green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}}}
			f.restart()
			want := tc.want
			if b := f.c.Pool("blue"); b.Model != "m1" || !slices.Equal(replicaNames(b), want) {
				t.Fatalf("retained blue after a restart: model %s, replicas %v; want m1 on %v", b.Model, replicaNames(b), want)
			}
			if _, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil {
				t.Fatal(err)
			}
			if s := f.c.Status(); s.Live != "blue" {
				t.Fatalf("live %s after the rollback", s.Live)
			}
			if b := f.c.Pool("blue"); b.Model != "m1" || !slices.Equal(replicaNames(b), want) {
				t.Fatalf("blue live again: model %s, replicas %v; want m1 on %v", b.Model, replicaNames(b), want)
			}
		})
	}
}

func replicaNames(p *pool.Pool) []string {
	var out []string
	for _, r := range p.Replicas {
		out = append(out, r.Name)
	}
	return out
}
