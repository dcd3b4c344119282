package rollout

import (
	"errors"
	"testing"
)

// TestSetPoolsRefusedKeepsReplicas: when the load balancer refuses the
// pools of a reload, the previous pools come back with the very replicas
// they had, health included. Regression: a replica the refused file left
// out came back as a new replica, not checked yet (out of rotation until
// a health check), so a refused reload took the live pool's healthy
// replica out of service.
func TestSetPoolsRefusedKeepsReplicas(t *testing.T) {
	f := newFx(t, nil)
	live := f.c.Pool("blue").Replicas[0]
	if !live.Healthy() {
		t.Fatalf("blue's replica starts unhealthy: %+v", live.Health())
	}
	f.ap.mu.Lock()
	f.ap.fail = errors.New("nginx -s reload: exit 1")
	f.ap.mu.Unlock()
	_, err := f.c.SetPools(f.ctx, map[string]PoolSpec{
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:7"}}, // the live replica left out
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
	})
	refused(t, err, "apply_failed", "nothing changed")
	b := f.c.Pool("blue")
	if len(b.Replicas) != 1 || b.Replicas[0] != live {
		t.Fatalf("blue after a refused reload: %+v, want its previous replica itself", b.Replicas)
	}
	if !b.Replicas[0].Healthy() {
		t.Errorf("blue's replica after a refused reload: %+v, want healthy as before", b.Replicas[0].Health())
	}
	f.ap.mu.Lock()
	f.ap.fail = nil
	f.ap.mu.Unlock()
	if _, err := f.c.SetPools(f.ctx, map[string]PoolSpec{ // the same pools as before the refusal: nothing to do
		"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
		"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
	}); err != nil {
		t.Fatal(err)
	}
	if f.c.Pool("blue").Replicas[0] != live {
		t.Errorf("blue's replica replaced by a reload of the running pools")
	}
}
