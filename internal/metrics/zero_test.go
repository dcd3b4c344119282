package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestCountersExistAtZero: the counters alerts use exist at 0 from the
// first scrape, for every replica in a pool, every hook event and every
// fallback reason (regression: a series appeared with its first event, so
// increase() over it saw nothing and an alert missed the first error).
// A replica that leaves its pool takes its zero series with it.
func TestCountersExistAtZero(t *testing.T) {
	src := &mutableSource{}
	src.set(api.Status{Live: "blue", Pools: map[string]api.Pool{
		"blue":  {Replicas: []api.Replica{{URL: "http://a:8000"}, {URL: "http://b:8000"}}},
		"green": {Replicas: []api.Replica{{URL: "http://c:8000"}}},
	}})
	m := New(src)
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	body := scrape()
	for _, want := range []string{
		`cutover_upstream_errors_total{kind="upstream_unreachable",pool="blue",replica="http://a:8000"} 0`,
		`cutover_upstream_errors_total{kind="status_5xx",pool="green",replica="http://c:8000"} 0`,
		`cutover_upstream_errors_total{kind="stream_error",pool="blue",replica="http://b:8000"} 0`,
		`cutover_upstream_errors_total{kind="no_healthy_replica",pool="green",replica="none"} 0`,
		`cutover_requests_total{code="5xx",pool="blue",replica="http://a:8000"} 0`,
		`cutover_requests_total{code="2xx",pool="green",replica="http://c:8000"} 0`,
		`cutover_retries_total{pool="blue"} 0`,
		`cutover_hook_runs_total{event="on_retire",outcome="failed"} 0`,
		`cutover_hook_runs_total{event="before_promote",outcome="ok"} 0`,
		`cutover_proxy_fallback_connections_total{reason="chunked_body"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("first scrape lacks %s", want)
		}
	}
	src.set(api.Status{Live: "blue", Pools: map[string]api.Pool{
		"blue":  {Replicas: []api.Replica{{URL: "http://a:8000"}}},
		"green": {Replicas: []api.Replica{{URL: "http://c:8000"}}},
	}})
	scrape() // prunes
	body = scrape()
	if strings.Contains(body, "http://b:8000") {
		t.Errorf("series of a replica that left remain")
	}
	if !strings.Contains(body, `cutover_upstream_errors_total{kind="upstream_timeout",pool="blue",replica="http://a:8000"} 0`) {
		t.Errorf("series of a replica still in its pool went")
	}
}

// TestHookRunsKeepCounts: zero series do not hide or duplicate real
// counts.
func TestHookRunsKeepCounts(t *testing.T) {
	m := New(fakeSource{})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `cutover_hook_runs_total{event="on_retire",outcome="failed"} 2`) ||
		strings.Count(body, `cutover_hook_runs_total{event="on_retire",outcome="failed"}`) != 1 {
		t.Errorf("on_retire failed runs wrong:\n%s", body)
	}
}
