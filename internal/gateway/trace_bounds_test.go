package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/tracing"
)

// TestTracingClientModelBounded: a client's "model" becomes the request
// span's name and gen_ai.request.model only while it is short enough to
// be a model id. Regression: a body naming a model of 64 KiB put it twice
// in the span (name and attribute), held in the export queue, on both
// serving paths.
func TestTracingClientModelBounded(t *testing.T) {
	for _, client := range []string{"cutover", "net/http"} {
		t.Run(strings.ReplaceAll(client, "/", "-"), func(t *testing.T) {
			rep := startTraceReplica(t, "model-v1", false)
			e, w := tracedEnv(t, func(c *config.Config) {
				c.Proxy.Client = client
				c.Pools["blue"].Replicas = []string{rep.srv.URL}
			})
			tid := trace.TraceID{0x7a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
			huge := strings.Repeat("m", 64<<10)
			body := `{"model":"` + huge + `","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
			req, err := http.NewRequest(http.MethodPost, e.traffic+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Traceparent", "00-"+tid.String()+"-00f067aa0ba902b7-01")
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s := w.wait(t, "for the request", inTrace(tid, trace.SpanKindServer))
			if s.Name() != "chat" {
				t.Errorf("span name is %d bytes (%.40q...), want %q", len(s.Name()), s.Name(), "chat")
			}
			if v, ok := attrOf(s, tracing.AttrRequestModel); ok {
				t.Errorf("gen_ai.request.model set to %d bytes, want it left out", len(v.AsString()))
			}
		})
	}
}

// TestTracingClientPathBounded: a long request path (the client's input,
// up to the 64 KiB head) is cut in url.path and left out of the span's
// name, which is then the method alone. Regression: both carried the whole
// path, twice per span held in the export queue.
func TestTracingClientPathBounded(t *testing.T) {
	for _, client := range []string{"cutover", "net/http"} {
		t.Run(strings.ReplaceAll(client, "/", "-"), func(t *testing.T) {
			rep := startTraceReplica(t, "model-v1", false)
			e, w := tracedEnv(t, func(c *config.Config) {
				c.Proxy.Client = client
				c.Pools["blue"].Replicas = []string{rep.srv.URL}
			})
			tid := trace.TraceID{0x7b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
			req, err := http.NewRequest(http.MethodPost, e.traffic+"/v1/"+strings.Repeat("p", 48<<10), strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Traceparent", "00-"+tid.String()+"-00f067aa0ba902b7-01")
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s := w.wait(t, "for the request", inTrace(tid, trace.SpanKindServer))
			if s.Name() != http.MethodPost {
				t.Errorf("span name is %d bytes (%.40q...), want %q", len(s.Name()), s.Name(), http.MethodPost)
			}
			if v, ok := attrOf(s, tracing.AttrPath); !ok || len(v.AsString()) > tracing.MaxAttrLen || !strings.HasPrefix(v.AsString(), "/v1/ppp") {
				t.Errorf("url.path is %d bytes (%.40q...), want its first %d at most", len(v.AsString()), v.AsString(), tracing.MaxAttrLen)
			}
		})
	}
}
