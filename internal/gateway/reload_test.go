package gateway_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestReloadWithoutConfigFile: a gateway not started from a file (the
// demo) refuses POST /api/v1/reload with 409 instead of pretending.
func TestReloadWithoutConfigFile(t *testing.T) {
	e := newEnv(t, envOptions{replicas: 1})
	_, err := e.admin.Reload(t.Context())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "no_config_file" {
		t.Fatalf("Reload() error = %v, want 409 no_config_file", err)
	}
}

// TestFleetReloadIsPerGateway: in a fleet, a reload changes the reloading
// gateway alone and writes nothing to etcd: the replicas of a pool no
// deployment owns come from each gateway's own file (as at a start), so
// only gw-1 serves green's new replica; once a deployment owns green, its
// replicas are the state's on every gateway and a reload lists the file's
// change as not applied.
func TestFleetReloadIsPerGateway(t *testing.T) {
	f := newFleet(t, 1)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUTOVER_ADMIN_TOKEN", "")
	f.cfg.Admin.TokenFile = tokenFile
	cfg := *f.cfg
	gw1State := t.TempDir()
	file := filepath.Join(t.TempDir(), "cutover.yaml")
	writeConfig := func(green ...string) {
		t.Helper()
		c := cfg
		c.Name, c.StateDir = "gw-1", gw1State
		c.Pools = map[string]*config.Pool{"blue": cfg.Pools["blue"], "green": {Model: cfg.Pools["green"].Model, Replicas: green}}
		b, err := yaml.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any // every key but the drivers' sections, which builtin refuses
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "nginx")
		delete(m, "haproxy")
		if b, err = yaml.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	green := cfg.Pools["green"].Replicas
	writeConfig(green...)
	gw0 := f.gws[0]
	gw1 := f.start(t, "gw-1", gw1State, gateway.WithConfigFile(file))
	rev := gw0.gw.Controller().Status().Revision

	added := startReplica(t, mockllm.Config{Model: cfg.Pools["green"].Model, Tokens: 4}, "")
	writeConfig(append(slices.Clone(green), added.URL())...)
	res, err := gw1.admin.Reload(t.Context())
	if err != nil || !slices.Contains(res.Applied, "pools.green.replicas") || len(res.RestartNeeded) != 0 {
		t.Fatalf("reload of gw-1: %+v, %v", res, err)
	}
	if n := len(gw1.gw.Controller().Pool("green").Replicas); n != 3 {
		t.Errorf("gw-1's green has %d replicas, want 3", n)
	}
	if n := len(gw0.gw.Controller().Pool("green").Replicas); n != 2 {
		t.Errorf("gw-0's green has %d replicas after gw-1's reload, want its own 2", n)
	}
	for i, e := range []*env{gw0, gw1} {
		if got := e.gw.Controller().Status().Revision; got != rev {
			t.Errorf("gw-%d at revision %d after a reload, want %d: a reload writes nothing to etcd", i, got, rev)
		}
	}

	deployed := startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")
	if _, err := gw0.admin.Deploy(t.Context(), api.DeployRequest{Model: "model-v3", Replicas: []string{deployed.URL()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gw-1 following the deployment", 20*time.Second, func() bool {
		p := gw1.gw.Controller().Pool("green")
		return p != nil && p.Model == "model-v3"
	})
	writeConfig(green...)
	res, err = gw1.admin.Reload(t.Context())
	if err != nil || !slices.Equal(res.NotApplied, []string{"pools.green.replicas"}) || slices.Contains(res.Applied, "pools.green.replicas") {
		t.Fatalf("reload of gw-1 with the deployment's pool changed: %+v, %v", res, err)
	}
	if p := gw1.gw.Controller().Pool("green"); len(p.Replicas) != 1 || p.Replicas[0].Name != deployed.URL() {
		t.Errorf("gw-1's green after the reload: %+v, want the deployment's replica", p.Replicas)
	}
}
