package rollout

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/api"

	"github.com/cutover-dev/cutover/internal/route"
	"github.com/cutover-dev/cutover/internal/store"
)

// safetyApplier accepts every table.
type safetyApplier struct{}

func (safetyApplier) Apply(context.Context, *route.Table) error { return nil }

// safetyLog is a log sink safe for concurrent writers.
type safetyLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safetyLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safetyLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// boltOptions are controller options over a real bbolt store in dir: two
// one-replica pools, blue live on the first start. The caller closes the
// store.
func boltOptions(t *testing.T, dir string, log *safetyLog) (Options, *store.Bolt) {
	t.Helper()
	st, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Store: st, Applier: safetyApplier{}, Prober: &okProber{}, InitialLive: "blue",
		Pools: map[string]PoolSpec{
			"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
			"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
		}}
	if log != nil {
		o.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	return o, st
}

func mustStart(t *testing.T, o Options) *Controller {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStartWarnsWhenConfigLiveDiffers: a restart whose config says another
// live pool than the state says so (a regression: the state silently won,
// and an operator who edited live: thought traffic had moved).
func TestStartWarnsWhenConfigLiveDiffers(t *testing.T) {
	dir := t.TempDir()
	o, st := boltOptions(t, dir, nil)
	c := mustStart(t, o)
	if _, err := c.Promote(context.Background(), "test", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, tc := range []struct {
		configLive string
		warn       bool
	}{{"blue", true}, {"green", false}} {
		var log safetyLog
		o, st := boltOptions(t, dir, &log)
		o.InitialLive = tc.configLive
		c := mustStart(t, o)
		st.Close()
		if got := c.Status().Live; got != "green" {
			t.Fatalf("config live %s: restored live %s, want green (the state wins)", tc.configLive, got)
		}
		warned := strings.Contains(log.String(), "level=WARN") && strings.Contains(log.String(), "config_live="+tc.configLive)
		if warned != tc.warn {
			t.Errorf("config live %s, state live green: warned = %v, want %v; log:\n%s", tc.configLive, warned, tc.warn, log.String())
		}
	}
}
