package gateway_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/cutover-dev/cutover/internal/config"
)

// TestTracingMultipleTracestate: a client's tracestate sent as several
// header lines is one list (W3C Trace Context: they are combined, comma
// joined); every line's members are continued, on the data plane (both
// proxy clients) and the admin API (only the first line was).
func TestTracingMultipleTracestate(t *testing.T) {
	states := []string{"vendor=abc", "other=xyz,third=3"}
	want := map[string]string{"vendor": "abc", "other": "xyz", "third": "3"}
	check := func(t *testing.T, what string, ts trace.TraceState) {
		t.Helper()
		for k, v := range want {
			if got := ts.Get(k); got != v {
				t.Errorf("%s: tracestate %s=%q, want %q (state %q)", what, k, got, v, ts.String())
			}
		}
	}
	for _, client := range []string{"cutover", "net/http"} {
		t.Run(strings.ReplaceAll(client, "/", "-"), func(t *testing.T) {
			rep := startTraceReplica(t, "model-v1", false)
			e, w := tracedEnv(t, func(c *config.Config) {
				c.Proxy.Client = client
				c.Pools["blue"].Replicas = []string{rep.srv.URL}
			})
			tid := trace.TraceID{0x4c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
			req, err := http.NewRequest(http.MethodPost, e.traffic+"/v1/chat/completions",
				strings.NewReader(`{"model":"model-v1","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Traceparent", "00-"+tid.String()+"-00f067aa0ba902b7-01")
			req.Header["Tracestate"] = states
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			check(t, "request span", w.wait(t, "for trace "+tid.String(), inTrace(tid, trace.SpanKindServer)).SpanContext().TraceState())

			if client != "cutover" {
				return // the admin API is the same on both
			}
			areq, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.admin.BaseURL+"/api/v1/promote", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			areq.Header.Set("Authorization", "Bearer "+testToken)
			areq.Header.Set("Content-Type", "application/json")
			areq.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
			areq.Header["Tracestate"] = states
			aresp, err := e.http.Do(areq)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(aresp.Body)
			aresp.Body.Close()
			if aresp.StatusCode != http.StatusOK {
				t.Fatalf("promote: %d %s", aresp.StatusCode, b)
			}
			check(t, "admin call span", w.wait(t, "cutover.api.promote", named("cutover.api.promote")).SpanContext().TraceState())
		})
	}
}
