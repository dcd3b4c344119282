package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

type fakeSource struct{ st api.Status }

func (f fakeSource) Status() api.Status { return f.st }
func (f fakeSource) HookRuns() map[[2]string]uint64 {
	return map[[2]string]uint64{{"on_retire", "failed"}: 2, {"on_retire", "ok"}: 1}
}

func TestObserve(t *testing.T) {
	u, _ := url.Parse("http://10.0.0.1:8000")
	r := pool.NewReplica(u)
	m := New(fakeSource{st: api.Status{Pools: map[string]api.Pool{"blue": {Replicas: []api.Replica{{URL: r.Name}}}}}})
	obs := []proxy.Observation{
		{Pool: "blue", Replica: r, Status: 200, Duration: 300 * time.Millisecond, Stream: true, Bytes: 100, TTFT: 100 * time.Millisecond, Tokens: 11},
		{Pool: "blue", Replica: r, Status: 200, Duration: 50 * time.Millisecond, Tokens: 7, TokensFromUsage: true},
		{Pool: "blue", Replica: r, Status: 200, Stream: true, Bytes: 10, StreamError: true},
		{Pool: "blue", Replica: r, Status: 502, Error: "upstream_unreachable", Retried: true},
		{Pool: "blue", Replica: nil, Status: 503, Error: "no_healthy_replica"},
		{Pool: "blue", Replica: r, Status: 499, Error: "client_closed"},
		{Pool: "green", Replica: nil, Status: 503, Error: "no_healthy_replica"}, // its own pool's series
		{Pool: "green", Replica: nil, Status: 503, Error: "no_healthy_replica"},
	}
	for i := range obs {
		m.Observe(&obs[i])
	}
	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"2xx", testutil.ToFloat64(m.requests.WithLabelValues("blue", r.Name, "2xx")), 3},
		{"5xx", testutil.ToFloat64(m.requests.WithLabelValues("blue", r.Name, "5xx")), 1},
		{"4xx (client gone)", testutil.ToFloat64(m.requests.WithLabelValues("blue", r.Name, "4xx")), 1},
		{"tokens", testutil.ToFloat64(m.tokens.WithLabelValues("blue", r.Name)), 18},
		{"retries", testutil.ToFloat64(m.retries.WithLabelValues("blue")), 1},
		{"stream errors", testutil.ToFloat64(m.errors.WithLabelValues("blue", r.Name, "stream_error")), 1},
		{"unreachable", testutil.ToFloat64(m.errors.WithLabelValues("blue", r.Name, "upstream_unreachable")), 1},
		{"no replica", testutil.ToFloat64(m.errors.WithLabelValues("blue", "none", "no_healthy_replica")), 1},
		{"no replica in another pool", testutil.ToFloat64(m.errors.WithLabelValues("green", "none", "no_healthy_replica")), 2},
		{"its 5xx under its pool", testutil.ToFloat64(m.requests.WithLabelValues("green", "none", "5xx")), 2},
		{"client_closed is not an upstream error", float64(testutil.CollectAndCount(m.errors)), 4},
		{"ttft samples (streams answered 200)", histCount(t, m, `cutover_time_to_first_token_seconds_count{pool="blue",replica="http://10.0.0.1:8000"}`), 2},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestScrape(t *testing.T) {
	now := time.Now()
	src := fakeSource{st: api.Status{Live: "green", Revision: 7, SwitchedAt: now, Pools: map[string]api.Pool{
		"blue":  {Name: "blue", Model: "m1", Replicas: []api.Replica{{URL: "http://a", Healthy: false, InFlight: 2}}},
		"green": {Name: "green", Model: "m2", Live: true, Replicas: []api.Replica{{URL: "http://b", Healthy: true, InFlight: 5}}},
	}, Deployment: &api.Deployment{Phase: "promoted", Deadline: now, DeadlineKind: "retention",
		Gates: []api.Gate{{Name: "error_rate", Value: 0.01, Threshold: 0.02, Samples: 40, Verdict: "pass"}}}}}
	m := New(src)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	for _, want := range []string{
		`cutover_live_pool{model="m2",pool="green"} 1`,
		`cutover_live_pool{model="m1",pool="blue"} 0`,
		`cutover_state_revision 7`,
		`cutover_requests_in_flight{pool="green",replica="http://b"} 5`,
		`cutover_replica_healthy{pool="blue",replica="http://a"} 0`,
		`cutover_deployment_phase{phase="promoted"} 1`,
		`cutover_deployment_phase{phase="warming"} 0`,
		`cutover_deployment_deadline_timestamp_seconds{kind="retention"}`,
		`cutover_gate_verdict{gate="error_rate",verdict="pass"} 1`,
		`cutover_gate_value{gate="error_rate"} 0.01`,
		`cutover_hook_runs_total{event="on_retire",outcome="failed"} 2`,
		`cutover_last_switch_timestamp_seconds`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "cutover_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// BenchmarkObserve is the per-request cost of the metrics.
func BenchmarkObserve(b *testing.B) {
	u, _ := url.Parse("http://10.0.0.1:8000")
	r := pool.NewReplica(u)
	m := New(fakeSource{})
	o := proxy.Observation{Pool: "blue", Replica: r, Status: 200, Duration: 300 * time.Millisecond, Stream: true, Bytes: 100, TTFT: 100 * time.Millisecond, Tokens: 11}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(&o)
		}
	})
}

// histCount finds a sample line in the registry's text exposition.
func histCount(t *testing.T, m *Metrics, series string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// TestOutlierCounters: ejections count by replica and reason, refused
// ones by pool.
func TestOutlierCounters(t *testing.T) {
	m := New(fakeSource{})
	u, _ := url.Parse("http://10.0.0.1:8000")
	r := pool.NewReplica(u)
	m.OutlierEjected("blue", r, "consecutive_failures")
	m.OutlierEjected("blue", r, "failure_rate")
	m.OutlierEjected("blue", r, "failure_rate")
	m.OutlierOverflow("blue", r)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"consecutive", testutil.ToFloat64(m.ejected.WithLabelValues("blue", r.Name, "consecutive_failures")), 1},
		{"rate", testutil.ToFloat64(m.ejected.WithLabelValues("blue", r.Name, "failure_rate")), 2},
		{"overflow", testutil.ToFloat64(m.overflow.WithLabelValues("blue")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestFallbackCounter(t *testing.T) {
	m := New(fakeSource{})
	m.Fallback("http_version")
	m.Fallback("http_version")
	m.Fallback("chunked_body")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`cutover_proxy_fallback_connections_total{reason="http_version"} 2`,
		`cutover_proxy_fallback_connections_total{reason="chunked_body"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// TestRetiredReplicasSeriesGo: a scrape drops the request series of the
// replicas no longer in any pool (a retired pool, replaced replicas), and
// keeps those still in one and each pool's "none".
func TestRetiredReplicasSeriesGo(t *testing.T) {
	src := &mutableSource{}
	m := New(src)
	var rs []*pool.Replica
	for _, raw := range []string{"http://10.0.0.1:8000", "http://10.0.0.2:8000"} {
		u, _ := url.Parse(raw)
		rs = append(rs, pool.NewReplica(u))
	}
	src.set(api.Status{Pools: map[string]api.Pool{"blue": {Replicas: []api.Replica{{URL: rs[0].Name}, {URL: rs[1].Name}}}}})
	for _, r := range rs {
		m.Observe(&proxy.Observation{Pool: "blue", Replica: r, Status: 502, Error: "upstream_unreachable", Stream: true, Bytes: 1, Tokens: 3})
	}
	m.Observe(&proxy.Observation{Pool: "blue", Status: 503, Error: "no_healthy_replica"})
	m.OutlierEjected("blue", rs[1], "consecutive_failures")
	series := func() string {
		var b strings.Builder
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "replica" {
						fmt.Fprintf(&b, "%s{%s} ", mf.GetName(), l.GetValue())
					}
				}
			}
		}
		return b.String()
	}
	if got := series(); !strings.Contains(got, "cutover_requests_total{http://10.0.0.2:8000}") ||
		!strings.Contains(got, "cutover_outlier_ejections_total{http://10.0.0.2:8000}") {
		t.Fatalf("series before the change lack the second replica: %s", got)
	}
	src.set(api.Status{Pools: map[string]api.Pool{"blue": {Replicas: []api.Replica{{URL: rs[0].Name}}}}})
	series() // the scrape that prunes
	got := series()
	if strings.Contains(got, "10.0.0.2") {
		t.Errorf("series of the removed replica remain: %s", got)
	}
	for _, want := range []string{"cutover_requests_total{http://10.0.0.1:8000}", "cutover_upstream_errors_total{http://10.0.0.1:8000}", "cutover_requests_total{none}"} {
		if !strings.Contains(got, want) {
			t.Errorf("series lack %s: %s", want, got)
		}
	}
	// The replica comes back: its series start again.
	m.Observe(&proxy.Observation{Pool: "blue", Replica: rs[1], Status: 200})
	if got := testutil.ToFloat64(m.requests.WithLabelValues("blue", rs[1].Name, "2xx")); got != 1 {
		t.Errorf("a replica back in a pool: 2xx = %v, want 1", got)
	}
}

// mutableSource is a Source whose status a test changes.
type mutableSource struct {
	mu sync.Mutex
	st api.Status
}

func (s *mutableSource) set(st api.Status) { s.mu.Lock(); s.st = st; s.mu.Unlock() }
func (s *mutableSource) Status() api.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}
func (s *mutableSource) HookRuns() map[[2]string]uint64 { return nil }
