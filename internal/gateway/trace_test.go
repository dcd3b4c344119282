package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/tracing"
)

// spanWaiter is a span processor that keeps every ended span and lets a
// test wait for the one it expects.
type spanWaiter struct {
	mu    sync.Mutex
	ended []sdktrace.ReadOnlySpan
	kick  chan struct{}
}

func newSpanWaiter() *spanWaiter { return &spanWaiter{kick: make(chan struct{}, 1)} }

func (w *spanWaiter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (w *spanWaiter) OnEnd(s sdktrace.ReadOnlySpan) {
	w.mu.Lock()
	w.ended = append(w.ended, s)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
func (w *spanWaiter) Shutdown(context.Context) error   { return nil }
func (w *spanWaiter) ForceFlush(context.Context) error { return nil }

// wait returns the first ended span that match accepts, waiting for it
// (the data plane ends a request's span after the answer's last byte).
func (w *spanWaiter) wait(t *testing.T, what string, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		for _, s := range w.ended {
			if match(s) {
				w.mu.Unlock()
				return s
			}
		}
		w.mu.Unlock()
		select {
		case <-w.kick:
		case <-deadline:
			t.Fatalf("no span %s ended; got %v", what, w.names())
		}
	}
}

func (w *spanWaiter) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, s := range w.ended {
		out = append(out, s.Name())
	}
	return out
}

func named(name string) func(sdktrace.ReadOnlySpan) bool {
	return func(s sdktrace.ReadOnlySpan) bool { return s.Name() == name }
}

func inTrace(id trace.TraceID, kind trace.SpanKind) func(sdktrace.ReadOnlySpan) bool {
	return func(s sdktrace.ReadOnlySpan) bool { return s.SpanContext().TraceID() == id && s.SpanKind() == kind }
}

func attrOf(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// traceReplica is a simulated vLLM replica that records the traceparent
// of every request it gets; fail makes it answer completions with 503.
type traceReplica struct {
	srv *httptest.Server
	mu  sync.Mutex
	tps []string
}

func startTraceReplica(t *testing.T, model string, fail bool) *traceReplica {
	t.Helper()
	m, err := mockllm.New(mockllm.Config{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	r := &traceReplica{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/completions") {
			r.mu.Lock()
			r.tps = append(r.tps, req.Header.Get("Traceparent"))
			r.mu.Unlock()
			if fail {
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
				return
			}
		}
		m.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *traceReplica) traceparents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tps...)
}

// tracedEnv is a gateway whose spans go to the returned waiter.
func tracedEnv(t *testing.T, edit func(*config.Config)) (*env, *spanWaiter) {
	t.Helper()
	w := newSpanWaiter()
	p := tracing.NewWithProcessor(w, tracing.Config{SampleRatio: 1})
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return newEnv(t, envOptions{replicas: 1, edit: edit, opts: []gateway.Option{gateway.WithTracing(p)}}), w
}

// usageOf reads an answer (a stream's last usage chunk, or the JSON
// body's usage).
func usageOf(t *testing.T, body []byte, stream bool) (prompt, completion int64) {
	t.Helper()
	var u struct {
		Usage *struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if !stream {
		if err := json.Unmarshal(body, &u); err != nil || u.Usage == nil {
			t.Fatalf("answer without usage: %s (%v)", body, err)
		}
		return u.Usage.Prompt, u.Usage.Completion
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Usage *struct {
				Prompt     int64 `json:"prompt_tokens"`
				Completion int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if json.Unmarshal([]byte(data), &c) == nil && c.Usage != nil {
			u.Usage = c.Usage
		}
	}
	if u.Usage == nil {
		t.Fatalf("stream without usage: %s", body)
	}
	return u.Usage.Prompt, u.Usage.Completion
}

// TestTracingRequestSpan: on every serving path (the connection loop, the
// net/http server it hands unusual requests to, and proxy.client net/http),
// a streamed and a non-streamed chat completion each produce one server
// span that continues the client's traceparent, carries the GenAI
// attributes with the replica's own usage counts, and whose context the
// replica receives in place of the client's.
func TestTracingRequestSpan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		client  string
		chunked bool // a chunked request body: the loop hands it to net/http
	}{
		{"loop", "cutover", false},
		{"loop-fallback", "cutover", true},
		{"net-http", "net/http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := startTraceReplica(t, "model-v1", false)
			e, w := tracedEnv(t, func(c *config.Config) {
				c.Proxy.Client = tc.client
				c.Pools["blue"].Replicas = []string{rep.srv.URL}
			})
			for i, stream := range []bool{false, true} {
				tid := trace.TraceID{0x4b, 0xf9, byte(i + 1), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
				parent := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, byte(0xb7 + i)}
				tp := "00-" + tid.String() + "-" + parent.String() + "-01"
				body := `{"model":"model-v1","messages":[{"role":"user","content":"tell me a story"}],"max_tokens":12`
				if stream {
					body += `,"stream":true,"stream_options":{"include_usage":true}`
				}
				body += "}"
				var rd io.Reader = strings.NewReader(body)
				if tc.chunked {
					rd = io.MultiReader(rd) // unknown length: sent chunked
				}
				req, err := http.NewRequest(http.MethodPost, e.traffic+"/v1/chat/completions", rd)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Traceparent", tp)
				req.Header.Set("Tracestate", "vendor=abc")
				resp, err := e.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				answer, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("stream=%v: %d %s %v", stream, resp.StatusCode, answer, err)
				}
				prompt, completion := usageOf(t, answer, stream)

				s := w.wait(t, "for trace "+tid.String(), inTrace(tid, trace.SpanKindServer))
				if s.Name() != "chat model-v1" {
					t.Errorf("stream=%v: span name %q, want %q", stream, s.Name(), "chat model-v1")
				}
				if s.Parent().SpanID() != parent || !s.Parent().IsRemote() {
					t.Errorf("stream=%v: parent %v, want the client's span %v", stream, s.Parent().SpanID(), parent)
				}
				if got := s.SpanContext().TraceState().Get("vendor"); got != "abc" {
					t.Errorf("stream=%v: tracestate vendor=%q, want abc", stream, got)
				}
				want := map[attribute.Key]attribute.Value{
					tracing.AttrOperation:    attribute.StringValue("chat"),
					tracing.AttrRequestModel: attribute.StringValue("model-v1"),
					tracing.AttrRespModel:    attribute.StringValue("model-v1"),
					tracing.AttrInputTokens:  attribute.Int64Value(prompt),
					tracing.AttrOutputTokens: attribute.Int64Value(completion),
					tracing.AttrPool:         attribute.StringValue("blue"),
					tracing.AttrReplica:      attribute.StringValue(resp.Header.Get("X-Cutover-Replica")),
					tracing.AttrStatus:       attribute.Int64Value(200),
					tracing.AttrStream:       attribute.BoolValue(stream),
				}
				for k, v := range want {
					if got, ok := attrOf(s, k); !ok || got != v {
						t.Errorf("stream=%v: %s = %v (set %v), want %v", stream, k, got.String(), ok, v.String())
					}
				}
				if ttft, ok := attrOf(s, tracing.AttrTTFT); !ok || ttft.AsFloat64() <= 0 {
					t.Errorf("stream=%v: no time to first token: %v", stream, ttft.String())
				}
				var first bool
				for _, ev := range s.Events() {
					first = first || ev.Name == tracing.EventFirstToken
				}
				if !first {
					t.Errorf("stream=%v: no %s event: %v", stream, tracing.EventFirstToken, s.Events())
				}
				if s.Status().Code != codes.Unset {
					t.Errorf("stream=%v: status %v", stream, s.Status())
				}
				tps := rep.traceparents()
				if len(tps) != i+1 {
					t.Fatalf("replica got %d requests, want %d", len(tps), i+1)
				}
				wantTP := "00-" + tid.String() + "-" + s.SpanContext().SpanID().String() + "-01"
				if tps[i] != wantTP {
					t.Errorf("stream=%v: replica got traceparent %q, want the gateway span's %q", stream, tps[i], wantTP)
				}
			}
		})
	}
}

// TestTracingRetryEvent: a replica answering 503 before another takes the
// request shows as a retry event on the request's span.
func TestTracingRetryEvent(t *testing.T) {
	bad := startTraceReplica(t, "model-v1", true)
	good := startTraceReplica(t, "model-v1", false)
	e, w := tracedEnv(t, func(c *config.Config) {
		c.Balancer = "round_robin"
		c.Pools["blue"].Replicas = []string{bad.srv.URL, good.srv.URL}
	})
	// Round robin: one of two requests goes to the bad replica first.
	for i := range 2 {
		if r, err := e.chat(context.Background(), "model-v1", "hello", false, ""); err != nil || r.status != http.StatusOK {
			t.Fatalf("request %d: %+v %v", i, r, err)
		}
	}
	s := w.wait(t, "with a retry", func(s sdktrace.ReadOnlySpan) bool {
		v, _ := attrOf(s, tracing.AttrRetried)
		return v.AsBool()
	})
	var ev *sdktrace.Event
	for i := range s.Events() {
		if s.Events()[i].Name == tracing.EventRetry {
			ev = &s.Events()[i]
		}
	}
	if ev == nil {
		t.Fatalf("retried span without a retry event: %v", s.Events())
	}
	evAttrs := map[attribute.Key]string{}
	for _, kv := range ev.Attributes {
		evAttrs[kv.Key] = kv.Value.String()
	}
	if !strings.HasPrefix(evAttrs[tracing.AttrReplica], bad.srv.URL) {
		t.Errorf("retry event names replica %q, want the failing %s", evAttrs[tracing.AttrReplica], bad.srv.URL)
	}
	if evAttrs[tracing.AttrErrorType] == "" {
		t.Errorf("retry event without a reason: %v", evAttrs)
	}
	if v, _ := attrOf(s, tracing.AttrReplica); !strings.HasPrefix(v.AsString(), good.srv.URL) {
		t.Errorf("span's replica %q, want the one that answered, %s", v.AsString(), good.srv.URL)
	}
}

// TestTracingPromoteSpan: a promote through the admin API is a span of
// the caller's trace (api.Client.Traceparent, which the CLI takes from
// TRACEPARENT), with the committed transition as its child.
func TestTracingPromoteSpan(t *testing.T) {
	e, w := tracedEnv(t, nil)
	traced := *e.admin
	traced.Traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if _, err := traced.PromoteWith(context.Background(), api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	call := w.wait(t, "cutover.api.promote", named("cutover.api.promote"))
	if call.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || call.Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("promote span in trace %v under %v, want the caller's", call.SpanContext().TraceID(), call.Parent().SpanID())
	}
	tr := w.wait(t, "cutover.transition.promote", named("cutover.transition.promote"))
	if tr.Parent().SpanID() != call.SpanContext().SpanID() || tr.SpanContext().TraceID() != call.SpanContext().TraceID() {
		t.Errorf("transition span's parent %v, want the promote call's %v", tr.Parent().SpanID(), call.SpanContext().SpanID())
	}
	for k, want := range map[attribute.Key]string{"cutover.from": "blue", "cutover.to": "green", "cutover.actor": "test", "cutover.action": "promote"} {
		if v, _ := attrOf(tr, k); v.AsString() != want {
			t.Errorf("%s = %q, want %q", k, v.AsString(), want)
		}
	}
	if call.Status().Code != codes.Unset {
		t.Errorf("promote span status %v", call.Status())
	}
	if _, err := e.admin.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	rb := w.wait(t, "cutover.api.rollback", named("cutover.api.rollback"))
	w.wait(t, "cutover.transition.rollback under the call", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "cutover.transition.rollback" && s.Parent().SpanID() == rb.SpanContext().SpanID()
	})
}

// TestTracingOffPassesTraceparent: without tracing the client's trace
// context reaches the replica untouched.
func TestTracingOffPassesTraceparent(t *testing.T) {
	for _, client := range []string{"cutover", "net/http"} {
		t.Run(strings.ReplaceAll(client, "/", "-"), func(t *testing.T) {
			rep := startTraceReplica(t, "model-v1", false)
			e := newEnv(t, envOptions{replicas: 1, edit: func(c *config.Config) {
				c.Proxy.Client = client
				c.Pools["blue"].Replicas = []string{rep.srv.URL}
			}})
			const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			req, _ := http.NewRequest(http.MethodPost, e.traffic+"/v1/chat/completions",
				strings.NewReader(`{"model":"model-v1","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Traceparent", tp)
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := rep.traceparents(); len(got) != 1 || got[0] != tp {
				t.Errorf("replica got %q, want %q", got, tp)
			}
		})
	}
}

// TestTracingDeploymentSpans: a deployment's life shows as control-plane
// spans: the deploy call with its transition, the phases the controller
// moves through by itself, the promote call with its before_promote hook
// (which gets its span's TRACEPARENT) and transition, an on_promote hook
// that failed (error status), the retire call and the retirement, and a
// refused rollback.
func TestTracingDeploymentSpans(t *testing.T) {
	w := newSpanWaiter()
	p := tracing.NewWithProcessor(w, tracing.Config{SampleRatio: 1})
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	tpFile := filepath.Join(t.TempDir(), "traceparent")
	e := newEnv(t, envOptions{replicas: 1, modelName: "llama", mock: mockllm.Config{Tokens: 4}, opts: []gateway.Option{gateway.WithTracing(p)},
		edit: func(c *config.Config) {
			c.Health.Interval = config.Duration(50 * time.Millisecond)
			c.Rollout.Retention = config.Duration(time.Hour)
			c.Rollout.Warmup.Requests = []config.WarmupRequest{{Prompt: "warm", MaxTokens: 2}}
			c.Hooks = map[string][]config.Hook{
				"before_promote": {{Command: []string{"sh", "-c", `echo "$TRACEPARENT" > ` + tpFile}}},
				"on_promote":     {{Command: []string{"sh", "-c", "exit 3"}}},
			}
		}})
	spare := startReplica(t, mockllm.Config{Model: "model-v3", Tokens: 4}, "")
	ctx := context.Background()
	if _, err := e.admin.Deploy(ctx, api.DeployRequest{Model: "model-v3", Replicas: []string{spare.URL()}}); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, "ready", 20*time.Second)
	if _, err := e.admin.PromoteWith(ctx, api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}

	childOf := func(parent sdktrace.ReadOnlySpan, name string) func(sdktrace.ReadOnlySpan) bool {
		return func(s sdktrace.ReadOnlySpan) bool {
			return s.Name() == name && s.Parent().SpanID() == parent.SpanContext().SpanID()
		}
	}
	deploy := w.wait(t, "cutover.api.deploy", named("cutover.api.deploy"))
	w.wait(t, "cutover.transition.deploy under the call", childOf(deploy, "cutover.transition.deploy"))
	ready := w.wait(t, "phase to ready", func(s sdktrace.ReadOnlySpan) bool {
		v, _ := attrOf(s, "cutover.to")
		return s.Name() == "cutover.transition.phase" && v.AsString() == "ready"
	})
	if ready.Parent().IsValid() {
		t.Errorf("the controller's own phase change has parent %v, want a trace of its own", ready.Parent().SpanID())
	}
	promote := w.wait(t, "cutover.api.promote", named("cutover.api.promote"))
	hook := w.wait(t, "before_promote hook under the promote", childOf(promote, "cutover.hook.before_promote"))
	if v, _ := attrOf(hook, "cutover.hook.ok"); !v.AsBool() || hook.Status().Code != codes.Unset {
		t.Errorf("before_promote span: ok %v status %v", v.String(), hook.Status())
	}
	got, err := os.ReadFile(tpFile)
	if want := "00-" + hook.SpanContext().TraceID().String() + "-" + hook.SpanContext().SpanID().String() + "-01"; err != nil || strings.TrimSpace(string(got)) != want {
		t.Errorf("the hook got TRACEPARENT %q (%v), want its span's %q", got, err, want)
	}
	w.wait(t, "cutover.transition.promote under the promote", childOf(promote, "cutover.transition.promote"))
	failed := w.wait(t, "cutover.hook.on_promote", named("cutover.hook.on_promote"))
	if failed.Status().Code != codes.Error {
		t.Errorf("failed on_promote hook: status %v, want an error", failed.Status())
	}
	if v, _ := attrOf(failed, "cutover.hook.exit_code"); v.AsInt64() != 3 {
		t.Errorf("failed on_promote hook: exit code %v, want 3", v.String())
	}

	// Retire ends the retention now: the call, its transition, and the
	// retirement the controller then carries out by itself.
	if _, err := e.admin.Retire(ctx, false); err != nil {
		t.Fatal(err)
	}
	retire := w.wait(t, "cutover.api.retire", named("cutover.api.retire"))
	w.wait(t, "cutover.transition.retention_ended under the call", childOf(retire, "cutover.transition.retention_ended"))
	w.wait(t, "phase to completed", func(s sdktrace.ReadOnlySpan) bool {
		v, _ := attrOf(s, "cutover.to")
		return s.Name() == "cutover.transition.phase" && v.AsString() == "completed"
	})
	// A refused call is a span with an error status: no rollback once the
	// old pool is retired.
	if _, err := e.admin.Rollback(ctx); err == nil {
		t.Fatal("a rollback after the retirement was not refused")
	}
	w.wait(t, "a refused rollback", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "cutover.api.rollback" && s.Status().Code == codes.Error && s.Status().Description != ""
	})
}
