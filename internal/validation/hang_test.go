package validation

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/shadow"
)

// TestHangingCandidateDoesNotPass: once the candidate stops answering,
// the error rate gate stops passing while its copies hang, instead of
// passing on the answers it gave before until shadow.timeout counts the
// hanging ones (a regression: validation passed, and a deployment could
// promote, over a candidate that had stopped answering).
func TestHangingCandidateDoesNotPass(t *testing.T) {
	var hang atomic.Bool
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hang.Load() {
			select {
			case started <- struct{}{}:
			default: // the test waits for the first only
			}
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"choices":[{"message":{"content":"hi"}}]}`)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	m := shadow.New(shadow.Options{Percent: 100, Concurrency: 4, Timeout: time.Hour, Upstream: &proxy.Upstream{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	v := NewValidator(Gates{ErrorRate: GateConfig{Enabled: true, Threshold: 0.02, MinSamples: 5},
		LatencyRatio: GateConfig{Threshold: 1.5}}, m, nil)
	v.Start(ctx, "blue", &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{pool.NewReplica(u)}})
	defer v.Stop()
	live := proxy.Observation{Pool: "blue", Status: http.StatusOK, Duration: time.Millisecond}
	v.Observe(&live) // the live p95: 1 ms, so a copy hangs after 1.5 ms
	submit := func() {
		m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`), Live: live})
	}
	errorRate := func() string {
		gates, _ := v.Evaluate()
		for _, g := range gates {
			if g.Name == GateErrorRate {
				return g.Verdict
			}
		}
		return ""
	}
	for range 60 {
		submit()
	}
	await(t, "60 answers to pass", func() bool {
		gates, _ := v.Evaluate()
		return len(gates) == 1 && gates[0].Samples == 60 && gates[0].Verdict == Pass
	})
	hang.Store(true)
	submit()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the copy never reached the candidate")
	}
	// Its wait grows past the bound without another answer; one of 61
	// is within the threshold, but it holds the pass.
	await(t, "the hanging copy to hold the pass", func() bool { return errorRate() == Inconclusive })
	for range 2 {
		submit() // 3 of 63 unanswered: over the threshold
	}
	await(t, "the hanging copies to fail the gate", func() bool { return errorRate() == Fail })
}

// await polls cond until it holds, for at most 20 s.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
	}
}
