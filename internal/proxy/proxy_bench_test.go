package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

func benchTable(b *testing.B, backends ...string) *route.Table { return benchTableT(b, backends...) }

func benchTableT(b testing.TB, backends ...string) *route.Table {
	b.Helper()
	p := &pool.Pool{Name: "blue", Model: "model-v1"}
	for _, s := range backends {
		u, err := url.Parse(s)
		if err != nil {
			b.Fatal(err)
		}
		p.Replicas = append(p.Replicas, pool.NewReplica(u))
	}
	return route.New(1, "blue", "llama", p, &pool.Pool{Name: "green", Model: "model-v2"})
}

// BenchmarkRoutingDecision is the per-request routing work: load the
// table, pick a replica among four.
func BenchmarkRoutingDecision(b *testing.B) {
	h := New(Options{})
	h.Apply(benchTable(b, "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000", "http://10.0.0.4:8000"))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := h.table.Load()
			if h.picker.Pick(t.Live.Pool.Replicas, nil) == nil {
				b.Fatal("no replica")
			}
		}
	})
}

const smallChat = `{"model":"llama","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi"}],"max_tokens":8,"temperature":0}`

// transports are the upstream clients the Handler tests run with.
var transports = []struct {
	name string
	new  func() http.RoundTripper
}{
	{"upstream", func() http.RoundTripper { return &Upstream{} }},
	{"net-http", func() http.RoundTripper { return NewTransport(0, 0) }},
}

// gateways are the data-plane set-ups compared by the proxy benchmarks:
// the front (the Server loop, or net/http's server) and the client to
// replicas.
var gateways = []struct {
	name  string
	loop  bool
	newRT func() http.RoundTripper
}{
	{"loop", true, func() http.RoundTripper { return &Upstream{} }},
	{"net-http-server/upstream", false, func() http.RoundTripper { return &Upstream{} }},
	{"net-http-server/net-http", false, func() http.RoundTripper { return NewTransport(0, 0) }},
}

// startGateway serves h the way g says, on loopback, and returns its URL.
func startGateway(b *testing.B, h *Handler, loop bool) string {
	if !loop {
		gw := httptest.NewServer(h)
		b.Cleanup(gw.Close)
		return gw.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// BenchmarkProxySmall proxies a small non-streamed chat completion over
// real loopback sockets (client -> gateway -> backend). The table has
// model_name set and the body names it: every body is rewritten, except
// in loop/plain, whose body names the pool's own model.
func BenchmarkProxySmall(b *testing.B) {
	for _, g := range gateways {
		b.Run(g.name, func(b *testing.B) { benchProxySmall(b, Options{Transport: g.newRT()}, g.loop) })
	}
	b.Run("loop/plain", func(b *testing.B) {
		benchProxySmallBody(b, Options{Transport: &Upstream{}}, true, strings.Replace(smallChat, `"llama"`, `"model-v1"`, 1))
	})
	// The loop gateway with balancer: llm, its replica's engine metrics
	// published once and fresh for the run: what scoring and prefix
	// hashing add to a request.
	b.Run("loop/llm", func(b *testing.B) {
		l := pool.NewLLM(pool.LLMOptions{StaleAfter: 24 * time.Hour})
		benchProxySmall(b, Options{Transport: &Upstream{}, Picker: l}, true)
	})
	// The same with the gateway queue on: a pool with free slots never
	// holds a request, and the check takes no lock.
	b.Run("loop/llm-queue", func(b *testing.B) {
		l := pool.NewLLM(pool.LLMOptions{StaleAfter: 24 * time.Hour, QueueTimeout: time.Second})
		benchProxySmall(b, Options{Transport: &Upstream{}, Picker: l}, true)
	})
}

// benchProxySmall runs the small-request benchmark through a Handler with
// opts. Replicas get engine metrics (running 1 of 4, a batch limit known,
// KV 0.3) for the llm balancer.
func benchProxySmall(b *testing.B, opts Options, loop bool) {
	benchProxySmallBody(b, opts, loop, smallChat)
}

// benchProxySmallBody is benchProxySmall sending body.
func benchProxySmallBody(b *testing.B, opts Options, loop bool, chat string) {
	answer := []byte(`{"id":"x","object":"chat.completion","model":"model-v1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer backend.Close()
	h := New(opts)
	h.Apply(benchTable(b, backend.URL))
	for _, r := range h.table.Load().Live.Pool.Replicas {
		r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 1, Slots: 4, Queued: true, KV: 0.3})
	}
	gwURL := startGateway(b, h, loop)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(chat)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(gwURL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkRelayStream relays a 50-chunk SSE stream per iteration.
func BenchmarkRelayStream(b *testing.B) {
	for _, g := range gateways {
		b.Run(g.name, func(b *testing.B) { benchRelayStream(b, g.newRT(), g.loop) })
	}
}

func benchRelayStream(b *testing.B, rt http.RoundTripper, loop bool) {
	const chunks = 50
	var sb strings.Builder
	for i := range chunks {
		fmt.Fprintf(&sb, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"}}]}\n\n", i)
	}
	chunk := []byte(sb.String())
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for off := 0; off < len(chunk); {
			end := bytes.Index(chunk[off:], []byte("\n\n")) + off + 2
			_, _ = w.Write(chunk[off:end])
			f.Flush()
			off = end
		}
		_, _ = w.Write([]byte("data: [DONE]\n\n"))
	}))
	defer backend.Close()
	h := New(Options{Transport: rt})
	h.Apply(benchTable(b, backend.URL))
	gwURL := startGateway(b, h, loop)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(strings.Replace(smallChat, `"max_tokens"`, `"stream":true,"max_tokens"`, 1))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(gwURL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n < int64(len(chunk)) {
				b.Fatalf("short stream: %d bytes", n)
			}
		}
	})
}
