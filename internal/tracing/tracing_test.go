package tracing

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// collector is an OTLP/HTTP endpoint that records what it is sent.
type collector struct {
	mu    sync.Mutex
	paths []string
	hdr   http.Header
	body  []byte
	got   chan struct{}
}

func startCollector(t *testing.T) (*collector, string) {
	c := &collector{got: make(chan struct{}, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.paths, c.hdr, c.body = append(c.paths, r.Method+" "+r.URL.Path), r.Header.Clone(), b
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
		c.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// TestOTLPHTTPExport: spans reach an OTLP/HTTP collector at /v1/traces
// (the default path of a URL endpoint without one), with the configured
// headers, by the time Shutdown returns.
func TestOTLPHTTPExport(t *testing.T) {
	for _, tc := range []struct {
		endpoint func(url string) string
		wantPath string
	}{
		{endpoint: func(u string) string { return u }, wantPath: "POST /v1/traces"},
		{endpoint: func(u string) string { return u + "/" }, wantPath: "POST /v1/traces"},
		{endpoint: func(u string) string { return u + "/otlp/v1/traces" }, wantPath: "POST /otlp/v1/traces"},
		{endpoint: func(u string) string { return strings.TrimPrefix(u, "http://") }, wantPath: "POST /v1/traces"}, // host:port, insecure
	} {
		t.Run(tc.wantPath, func(t *testing.T) {
			c, url := startCollector(t)
			p, err := New(context.Background(), Config{Endpoint: tc.endpoint(url), Protocol: "http", SampleRatio: 1, Insecure: true,
				Headers: map[string]string{"X-Api-Key": "k1"}})
			if err != nil {
				t.Fatal(err)
			}
			_, end := p.Span(context.Background(), "cutover.api.promote", time.Time{}, slog.String("cutover.actor", "ops"))
			end(nil)
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.got:
			default:
				t.Fatal("collector got nothing by the end of Shutdown")
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.paths) == 0 || c.paths[0] != tc.wantPath {
				t.Errorf("collector got %v, want %s", c.paths, tc.wantPath)
			}
			if c.hdr.Get("X-Api-Key") != "k1" || c.hdr.Get("Content-Type") != "application/x-protobuf" {
				t.Errorf("export headers %v", c.hdr)
			}
			if !strings.Contains(string(c.body), "cutover.api.promote") {
				t.Errorf("export body does not carry the span's name: %q", c.body)
			}
		})
	}
}

// TestSpanStatusAndAttrs: a control-plane span carries its attributes by
// type, its start time, and an error status when it failed.
func TestSpanStatusAndAttrs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := NewWithProcessor(rec, Config{SampleRatio: 1})
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	ctx, end := p.Span(context.Background(), "cutover.api.deploy", time.Time{})
	_, endHook := p.Span(ctx, "cutover.hook.before_promote", start, slog.String("cutover.hook", "eval"), slog.Bool("cutover.hook.ok", false),
		slog.Int64("cutover.hook.duration_ms", 1500), slog.Int("cutover.hook.exit_code", 3))
	endHook(errors.New("hook eval exited 3"))
	end(nil)
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2", len(spans))
	}
	hook, call := spans[0], spans[1]
	if hook.Parent().SpanID() != call.SpanContext().SpanID() {
		t.Errorf("hook span's parent %v, want the call's %v", hook.Parent().SpanID(), call.SpanContext().SpanID())
	}
	if !hook.StartTime().Equal(start) {
		t.Errorf("hook span starts %v, want %v", hook.StartTime(), start)
	}
	if hook.Status().Code != codes.Error || hook.Status().Description != "hook eval exited 3" {
		t.Errorf("hook span status %+v", hook.Status())
	}
	if call.Status().Code != codes.Unset {
		t.Errorf("call span status %+v", call.Status())
	}
	want := []attribute.KeyValue{attribute.String("cutover.hook", "eval"), attribute.Bool("cutover.hook.ok", false),
		attribute.Int64("cutover.hook.duration_ms", 1500), attribute.Int64("cutover.hook.exit_code", 3)}
	got := hook.Attributes()
	if len(got) != len(want) {
		t.Fatalf("attributes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attribute %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// TestSampleRatioZero: with sample_ratio 0 a new trace is not recorded,
// but a request whose caller sampled it is (parent-based).
func TestSampleRatioZero(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := NewWithProcessor(rec, Config{SampleRatio: 0})
	_, end := p.Span(context.Background(), "cutover.api.promote", time.Time{})
	end(nil)
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("ratio 0 recorded %d spans", n)
	}
	tp, _ := p.StartRequest(testStart("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")).Propagation()
	if !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || !strings.HasSuffix(tp, "-01") {
		t.Errorf("sampled caller: propagated %q, want the caller's trace, sampled", tp)
	}
	tp, _ = p.StartRequest(testStart("")).Propagation()
	if !strings.HasSuffix(tp, "-00") {
		t.Errorf("new trace at ratio 0: propagated %q, want it marked not sampled", tp)
	}
}

// TestIgnoreParent: with IgnoreParent (tracing.parent_based false) a
// client's sampled flag does not force its request to be traced: the
// ratio decides, the caller's trace is still continued.
func TestIgnoreParent(t *testing.T) {
	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		ratio float64
		flag  string
		spans int
	}{
		{0, "-00", 0},
		{1, "-01", 1},
	} {
		rec := tracetest.NewSpanRecorder()
		p := NewWithProcessor(rec, Config{SampleRatio: tc.ratio, IgnoreParent: true})
		s := p.StartRequest(testStart(caller))
		tp, _ := s.Propagation()
		s.End(&proxy.Observation{Status: 200}, proxy.SpanAnswer{})
		if !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || !strings.HasSuffix(tp, tc.flag) {
			t.Errorf("ratio %v: propagated %q, want the caller's trace with flag %s", tc.ratio, tp, tc.flag)
		}
		if n := len(rec.Ended()); n != tc.spans {
			t.Errorf("ratio %v: %d spans recorded, want %d", tc.ratio, n, tc.spans)
		}
	}
}

func testStart(traceparent string) *proxy.SpanStart {
	return &proxy.SpanStart{Start: time.Now(), Method: "POST", Path: "/v1/chat/completions", Pool: "blue", Traceparent: traceparent}
}

func TestOperation(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/chat/completions": "chat", "/v1/completions": "text_completion", "/v1/embeddings": "embeddings",
		"/v1/chat/completions/": "chat", "/v1/models": "", "/v1/rerank": "",
	} {
		if got := Operation(path); got != want {
			t.Errorf("Operation(%q) = %q, want %q", path, got, want)
		}
	}
}

// traceService is an OTLP/gRPC collector that records what it is sent.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	got chan *coltracepb.ExportTraceServiceRequest
}

func (s *traceService) Export(_ context.Context, r *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.got <- r
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestOTLPGRPCExport: with protocol grpc, spans reach an OTLP/gRPC
// collector, plain text to a host:port endpoint with insecure.
func TestOTLPGRPCExport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &traceService{got: make(chan *coltracepb.ExportTraceServiceRequest, 16)}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, svc)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	p, err := New(context.Background(), Config{Endpoint: ln.Addr().String(), Protocol: "grpc", SampleRatio: 1, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	_, end := p.Span(context.Background(), "cutover.transition.promote", time.Time{})
	end(nil)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-svc.got:
		var names []string
		for _, rs := range r.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetName())
				}
			}
		}
		if len(names) != 1 || names[0] != "cutover.transition.promote" {
			t.Errorf("collector got spans %v", names)
		}
	default:
		t.Fatal("collector got nothing by the end of Shutdown")
	}
}

// TestRequestSpanEnd: what a request's span says of a failed request, a
// stream whose tokens were counted, and an answer without usage.
func TestRequestSpanEnd(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := NewWithProcessor(rec, Config{SampleRatio: 1})
	u, _ := url.Parse("http://10.0.0.7:8000")
	rep := &pool.Replica{Name: "http://10.0.0.7:8000", URL: u}
	start := time.Now()
	for _, tc := range []struct {
		name    string
		o       proxy.Observation
		a       proxy.SpanAnswer
		status  codes.Code
		desc    string
		has     []attribute.KeyValue
		missing []attribute.Key
	}{
		{name: "unreachable", o: proxy.Observation{Status: 502, Error: "upstream_unreachable", Replica: rep, Retried: true},
			a: proxy.SpanAnswer{InputTokens: -1}, status: codes.Error, desc: "upstream_unreachable",
			has:     []attribute.KeyValue{AttrErrorType.String("upstream_unreachable"), AttrStatus.Int(502), AttrServerAddr.String("10.0.0.7"), AttrRetried.Bool(true)},
			missing: []attribute.Key{AttrInputTokens, AttrOutputTokens, AttrRespModel, AttrTTFT}},
		{name: "stream error", o: proxy.Observation{Status: 200, Stream: true, StreamError: true, Tokens: 3, TTFT: time.Millisecond},
			a: proxy.SpanAnswer{ResponseModel: "m", InputTokens: 9}, status: codes.Error, desc: "error event in the stream",
			has: []attribute.KeyValue{AttrOutputTokens.Int(3), AttrTokensCounted.Bool(true), AttrInputTokens.Int(9), AttrRespModel.String("m")}},
		{name: "client left", o: proxy.Observation{Status: 499, Error: "client_closed"}, a: proxy.SpanAnswer{InputTokens: -1},
			status: codes.Unset, has: []attribute.KeyValue{AttrErrorType.String("client_closed")}},
		{name: "4xx", o: proxy.Observation{Status: 400, TokensFromUsage: false}, a: proxy.SpanAnswer{InputTokens: -1},
			status: codes.Unset, missing: []attribute.Key{AttrOutputTokens, AttrErrorType}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.Reset()
			tc.o.Start, tc.o.Duration = start, 2*time.Millisecond
			p.StartRequest(testStart("")).End(&tc.o, tc.a)
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			s := spans[0]
			if s.Status().Code != tc.status || s.Status().Description != tc.desc {
				t.Errorf("status %+v, want %v %q", s.Status(), tc.status, tc.desc)
			}
			if !s.EndTime().Equal(start.Add(2 * time.Millisecond)) {
				t.Errorf("ends %v, want start+duration", s.EndTime())
			}
			got := map[attribute.Key]attribute.Value{}
			for _, kv := range s.Attributes() {
				got[kv.Key] = kv.Value
			}
			for _, kv := range tc.has {
				if got[kv.Key] != kv.Value {
					t.Errorf("%s = %v, want %v", kv.Key, got[kv.Key].String(), kv.Value.String())
				}
			}
			for _, k := range tc.missing {
				if _, ok := got[k]; ok {
					t.Errorf("%s set: %v", k, got[k].String())
				}
			}
		})
	}
}

// TestOTLPHeadersFromEnvironment: without tracing.headers the exporter
// sends OTEL_EXPORTER_OTLP_HEADERS, as docs/config.md says (a key kept out
// of the config file).
func TestOTLPHeadersFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=v1")
	c, url := startCollector(t)
	p, err := New(context.Background(), Config{Endpoint: url, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, end := p.Span(context.Background(), "cutover.transition.phase", time.Time{})
	end(nil)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hdr.Get("X-From-Env") != "v1" {
		t.Errorf("export headers %v, want x-from-env from the environment", c.hdr)
	}
}

// TestExportErrorLogged: a collector that refuses the spans is logged
// through the configured logger, not the SDK's own stderr logger.
func TestExportErrorLogged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such tenant", http.StatusBadRequest) // not retried
	}))
	defer srv.Close()
	var mu sync.Mutex
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	p, err := New(context.Background(), Config{Endpoint: srv.URL, SampleRatio: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	_, end := p.Span(context.Background(), "cutover.transition.phase", time.Time{})
	end(nil)
	_ = p.Shutdown(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "tracing: spans not exported") || !strings.Contains(logged.String(), "400") {
		t.Errorf("log %q, want the failed export", logged.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
