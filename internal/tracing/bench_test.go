package tracing

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/route"
)

// BenchmarkProxySmallTraced is proxy's BenchmarkProxySmall on the
// connection loop with tracing off, on with every request sampled (spans
// batched to an exporter that drops them), and on with none sampled: what
// a span per request costs.
func BenchmarkProxySmallTraced(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ratio float64
		on    bool
	}{{"off", 0, false}, {"sampled", 1, true}, {"unsampled", 0, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var tr proxy.Tracer
			if bc.on {
				p := NewWithProcessor(sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter()), Config{SampleRatio: bc.ratio})
				b.Cleanup(func() { _ = p.Shutdown(b.Context()) })
				tr = p
			}
			benchProxySmall(b, tr)
		})
	}
}

func benchProxySmall(b *testing.B, tr proxy.Tracer) {
	answer := []byte(`{"id":"x","object":"chat.completion","model":"model-v1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer backend.Close()
	u, err := url.Parse(backend.URL)
	if err != nil {
		b.Fatal(err)
	}
	blue := &pool.Pool{Name: "blue", Model: "model-v1", Replicas: []*pool.Replica{pool.NewReplica(u)}}
	h := proxy.New(proxy.Options{Transport: &proxy.Upstream{}, Tracer: tr})
	h.Apply(route.New(1, "blue", "llama", blue, &pool.Pool{Name: "green", Model: "model-v2"}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &proxy.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(`{"model":"llama","messages":[{"role":"user","content":"Say hi"}],"max_tokens":8}`)
	gw := "http://" + ln.Addr().String() + "/v1/chat/completions"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(gw, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
