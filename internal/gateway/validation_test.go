package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/shadow"
	"github.com/cutover-dev/cutover/internal/validation"
)

// validationEnv is a rolloutEnv with shadow traffic at 100 % and fast
// gate evaluation; the live pool answers with a TTFT of 20 ms. The
// samples the gates see carry the simulated timings (see floors), so
// that a loaded machine cannot move a latency ratio.
func validationEnv(t *testing.T, edit func(*config.Config)) *env {
	t.Helper()
	live := mockllm.Config{Tokens: 6, TTFT: 20 * time.Millisecond, ITL: 2 * time.Millisecond, Seed: 1}
	f := &floors{}
	f.set("blue", live)
	e := newEnv(t, envOptions{modelName: "llama", mock: live, adjust: f.adjust, edit: func(c *config.Config) {
		c.Health.Interval = config.Duration(50 * time.Millisecond)
		c.Rollout.Warmup.Requests = nil
		v := &c.Validation
		v.Shadow.Percent = 100
		v.Interval = config.Duration(100 * time.Millisecond)
		v.Deadline = config.Duration(time.Hour) // passes only when a test moves the clock
		v.FailureLimit = 5
		v.Gates.ErrorRate.MinSamples = 400 // 5 % errors must not pass on a lucky small sample
		// TTFT is the timing gate these tests steer; a slower first token
		// also slows whole requests, and the latency gate has its own
		// unit tests.
		v.Gates.LatencyRatio.Enabled = false
		v.Gates.ShadowMismatch.Enabled = true
		if edit != nil {
			edit(c)
		}
	}})
	e.floors = f
	return e
}

// floors takes a loaded machine's scheduling noise out of validation
// samples. The simulator's delays are lower bounds of what the gateway
// measures (it waits TTFT before the first token, ITL between tokens), and
// load only adds to them: each timing is cut down to what its pool
// simulates, so the gates compare the versions, not the scheduler. A
// measurement below the simulated time is kept, as the bug it would be.
type floors struct{ pools sync.Map } // pool name -> mockllm.Config

// set records pool's simulated timings (TTFT, ITL).
func (f *floors) set(pool string, mc mockllm.Config) { f.pools.Store(pool, mc) }

// adjust is the gateway's sample hook (gateway.WithSampleAdjust).
func (f *floors) adjust(pool string, s *validation.Sample) {
	v, ok := f.pools.Load(pool)
	if !ok || s.Failed {
		return
	}
	mc := v.(mockllm.Config)
	if s.Stream {
		s.TTFT = min(s.TTFT, mc.TTFT)
	}
	s.Duration = min(s.Duration, mc.TTFT+mc.ITL*time.Duration(max(s.Tokens, 1)-1))
}

// onlyGate enables the named gate alone, so that a test about it cannot
// be decided by another.
func onlyGate(c *config.Config, name string) {
	g := &c.Validation.Gates
	for key, gate := range map[string]*config.Gate{
		validation.GateErrorRate: &g.ErrorRate, validation.GateLatencyRatio: &g.LatencyRatio, validation.GateTTFT: &g.TTFT,
		validation.GateTTFTRatio: &g.TTFTRatio, validation.GateTPSRatio: &g.TPSRatio,
		validation.GateShadowMismatch: &g.ShadowMismatch, validation.GateSynthetic: &g.Synthetic,
	} {
		gate.Enabled = key == name
	}
}

// load sends deterministic requests (temperature 0), half of them
// streamed, from 8 clients until stop; it counts failures.
type load struct {
	stop   atomic.Bool
	wg     sync.WaitGroup
	total  atomic.Int64
	failed atomic.Int64
	first  atomic.Value
}

func startLoad(e *env, clients int) *load {
	l := &load{}
	for i := range clients {
		l.wg.Go(func() {
			for n := 0; !l.stop.Load() && n < 20000; n++ {
				res, err := e.chat(context.Background(), "llama", fmt.Sprintf("q%d-%d", i, n%50), n%2 == 0, `,"temperature":0`)
				l.total.Add(1)
				if err != nil || res.status != 200 {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, fmt.Sprintf("%d %v %s", res.status, err, res.body))
				}
			}
		})
	}
	return l
}

func (l *load) end() {
	l.stop.Store(true)
	l.wg.Wait()
}

func deployV2(t *testing.T, e *env, mc mockllm.Config) []*replica {
	t.Helper()
	mc.Model = "model-v2b"
	if e.floors != nil {
		e.floors.set("green", mc)
	}
	rs := []*replica{startReplica(t, mc, ""), startReplica(t, mc, "")}
	if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v2b", Replicas: urls(rs)}); err != nil {
		t.Fatal(err)
	}
	return rs
}

func gate(d *api.Deployment, name string) *api.Gate {
	for i := range d.Gates {
		if d.Gates[i].Name == name {
			return &d.Gates[i]
		}
	}
	return nil
}

// TestValidationPassesGoodVersion: a version that answers like the live
// one passes every gate and, with auto-promotion, is promoted.
func TestValidationPassesGoodVersion(t *testing.T) {
	e := validationEnv(t, func(c *config.Config) { c.Rollout.AutoPromote = true })
	l := startLoad(e, 8)
	defer l.end()
	deployV2(t, e, mockllm.Config{Tokens: 6, TTFT: 20 * time.Millisecond, ITL: 2 * time.Millisecond, AnswerAs: "model-v1"})
	d := e.waitPhase(t, "promoted", 60*time.Second)
	for _, name := range []string{"error_rate", "ttft_p95_ratio", "tokens_per_second_ratio", "shadow_mismatch_rate"} {
		g := gate(d, name)
		if g == nil || g.Verdict != "pass" {
			t.Errorf("gate %s: %+v", name, g)
		}
	}
	if d.Gates == nil || !strings.Contains(d.Reason, "promoted") {
		t.Errorf("deployment %+v", d)
	}
	l.end()
	if l.failed.Load() > 0 {
		t.Fatalf("%d of %d client requests failed: %v", l.failed.Load(), l.total.Load(), l.first.Load())
	}
	if s := e.gw.Mirror().Stats(); s.Sent == 0 {
		t.Errorf("no shadow copies sent: %+v", s)
	}
}

// TestValidationCatchesBadVersions: each kind of bad version is caught by
// its gate and never promoted.
func TestValidationCatchesBadVersions(t *testing.T) {
	// The suite expects the first words the live version answers; a
	// version that answers differently fails it.
	suite := filepath.Join(t.TempDir(), "suite.yaml")
	want := strings.Fields(mockllm.Answer("model-v1", "Say hello", 6))[0]
	if err := os.WriteFile(suite, []byte(fmt.Sprintf(`repeat: 5
cases:
  - name: greets
    messages: [{role: user, content: "Say hello"}]
    body: {max_tokens: 6, temperature: 0}
    expect: {contains: [%q]}
`, want)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mock mockllm.Config
		gate string
		edit func(*config.Config)
	}{
		// With seed 4, any 400 or more requests from the start of the
		// fault sequence, split in any way across the two replicas, hold
		// over 4.9 % errors: the rate is past the 2 % threshold at every
		// evaluation.
		{"5% errors", mockllm.Config{AnswerAs: "model-v1", ErrorRate: 0.05, Seed: 4}, "error_rate", nil},
		{"five times the TTFT", mockllm.Config{AnswerAs: "model-v1", TTFT: 100 * time.Millisecond}, "ttft_p95_ratio", nil},
		{"different text at temperature 0", mockllm.Config{}, "shadow_mismatch_rate", nil},
		{"a synthetic case failing", mockllm.Config{}, "synthetic_pass_rate", func(c *config.Config) {
			c.Validation.Shadow.Percent = 0 // the suite alone must catch it
			c.Validation.Synthetic = suite
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validationEnv(t, func(c *config.Config) {
				c.Rollout.AutoPromote = true
				onlyGate(c, tt.gate)
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			l := startLoad(e, 8)
			defer l.end()
			mc := tt.mock
			mc.Tokens, mc.ITL = 6, 2*time.Millisecond
			if mc.TTFT == 0 {
				mc.TTFT = 20 * time.Millisecond
			}
			deployV2(t, e, mc)
			d := e.waitPhase(t, "failed", 60*time.Second)
			if !strings.Contains(d.Reason, "gate "+tt.gate) {
				t.Fatalf("failed for %q, want gate %s", d.Reason, tt.gate)
			}
			if g := gate(d, tt.gate); g == nil || g.Verdict != "fail" || g.ConsecutiveFailures < 5 {
				t.Errorf("gate %s: %+v", tt.gate, g)
			}
			l.end()
			st := e.gw.Controller().Status()
			if st.Live != "blue" {
				t.Errorf("live %s after a failed validation", st.Live)
			}
			if l.failed.Load() > 0 {
				t.Errorf("%d client requests failed: %v", l.failed.Load(), l.first.Load())
			}
		})
	}
}

// TestValidationWithoutTrafficIsInconclusive: no samples never passes;
// at the deadline the deployment fails with "not enough samples".
func TestValidationWithoutTrafficIsInconclusive(t *testing.T) {
	e := validationEnv(t, nil)
	deployV2(t, e, mockllm.Config{AnswerAs: "model-v1"})
	waitFor(t, "an inconclusive evaluation", 20*time.Second, func() bool {
		d := e.gw.Controller().Status().Deployment
		if d.Phase != "validating" && d.Phase != "warming" {
			t.Fatalf("deployment %s (%s) before its validation deadline", d.Phase, d.Reason)
		}
		g := gate(d, "error_rate")
		return g != nil && g.Verdict == "inconclusive"
	})
	e.clock.advance(time.Hour) // the validation deadline passes
	d := e.waitPhase(t, "failed", 20*time.Second)
	if !strings.Contains(d.Reason, "not enough samples") || !strings.Contains(d.Reason, "error_rate 0/400") {
		t.Fatalf("reason %q", d.Reason)
	}
}

// TestShadowDoesNotSlowLive: live requests never wait for a candidate
// that hangs (each of them would hang for an hour behind it), and the
// copies that do not fit are dropped and counted.
func TestShadowDoesNotSlowLive(t *testing.T) {
	e := validationEnv(t, func(c *config.Config) {
		c.Validation.Shadow.Queue = 4
		c.Validation.Shadow.Concurrency = 2
	})
	deployV2(t, e, mockllm.Config{AnswerAs: "model-v1", TTFT: time.Hour}) // hangs
	e.waitPhase(t, "validating", 20*time.Second)
	// The window (and the mirror) starts at the reconcile after the phase
	// changed: from then on every live request is copied.
	waitFor(t, "the shadow mirror to start", 20*time.Second, e.gw.Mirror().Active)
	// A bound far past any scheduling delay and far short of the hour a
	// request held behind a shadow copy would take.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ds []time.Duration
	for i := range 100 {
		start := time.Now()
		if res, err := e.chat(ctx, "llama", fmt.Sprintf("p%d", i), false, `,"temperature":0`); err != nil || res.status != 200 {
			t.Fatalf("live request %d with a hanging shadow: %+v %v", i, res, err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	t.Logf("live p99 with a hanging shadow %s", ds[len(ds)*99/100])
	// 100 copies, 2 workers held for an hour, room for 4 more: at least
	// 94 dropped. A copy is handed over after its answer went out, so
	// the last ones may still be on their way.
	var st shadow.Stats
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st = e.gw.Mirror().Stats(); st.Dropped >= 94 {
			break
		}
	}
	if st.Dropped < 94 {
		t.Fatalf("queue of 4 with 2 hanging workers dropped %d of 100 copies: %+v", st.Dropped, st)
	}
	// The status shows the same counters.
	status, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := status.Shadow; s == nil || s.Dropped < st.Dropped || s.Sent < st.Sent {
		t.Errorf("status shadow %+v, want the mirror's %+v (or later)", s, st)
	}
}

// TestPostPromotionRegressionRollsBack: a regression that starts after
// the cutover rolls back automatically, with zero failed client requests.
func TestPostPromotionRegressionRollsBack(t *testing.T) {
	e := validationEnv(t, func(c *config.Config) {
		c.Rollout.AutoPromote = true
		c.Validation.PostPromotion = config.Duration(time.Hour) // as long as the retention: it ends only by a rollback
		c.Validation.Gates.ErrorRate.MinSamples = 50
	})
	l := startLoad(e, 8)
	defer l.end()
	rs := deployV2(t, e, mockllm.Config{Tokens: 6, TTFT: 20 * time.Millisecond, ITL: 2 * time.Millisecond, AnswerAs: "model-v1"})
	e.waitPhase(t, "promoted", 60*time.Second)
	// The new version degrades: first tokens four times slower.
	for _, r := range rs {
		r.mock.SetTTFT(80 * time.Millisecond)
	}
	e.floors.set("green", mockllm.Config{TTFT: 80 * time.Millisecond, ITL: 2 * time.Millisecond})
	d := e.waitPhase(t, "rolled_back", 60*time.Second)
	if !strings.Contains(d.Reason, "automatic rollback") || !strings.Contains(d.Reason, "ttft_p95_ratio") {
		t.Fatalf("reason %q", d.Reason)
	}
	l.end()
	if st := e.gw.Controller().Status(); st.Live != "blue" {
		t.Fatalf("live %s after the automatic rollback", st.Live)
	}
	if l.failed.Load() > 0 {
		t.Fatalf("%d of %d client requests failed: %v", l.failed.Load(), l.total.Load(), l.first.Load())
	}
	h, _ := e.admin.History(context.Background(), 0)
	if i := slices.IndexFunc(h.Events, func(ev api.Event) bool { return ev.Action == "rollback" && ev.Actor == "controller" }); i < 0 {
		t.Error("no controller rollback in the history")
	}
}

// TestPreviewListener reaches the candidate before anyone else.
func TestPreviewListener(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", edit: func(c *config.Config) { c.Preview.Listen = "127.0.0.1:0" }})
	saved := e.traffic
	e.traffic = "http://" + e.gw.PreviewAddr()
	res, err := e.chat(context.Background(), "llama", "preview", false, "")
	e.traffic = saved
	if err != nil || res.pool != "green" || res.model != "model-v2" {
		t.Fatalf("preview: %+v %v", res, err)
	}
	if res, err := e.chat(context.Background(), "llama", "main", false, ""); err != nil || res.pool != "blue" {
		t.Fatalf("main listener: %+v %v", res, err)
	}
}
