// Package tracing is cutover's OpenTelemetry set-up: it exports a span per
// proxied request (GenAI semantic conventions) and per control-plane
// transition over OTLP, behind the small interfaces the data plane
// (proxy.Tracer) and the controller (rollout.Tracer) consume, so that
// neither imports the SDK.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config is the exporter and sampling set-up (config.Tracing, resolved).
type Config struct {
	// Endpoint is host:port or http(s)://host:port[/path].
	Endpoint string
	// Protocol is "http" (the default when empty) or "grpc".
	Protocol string
	// SampleRatio is the share (0–1) of new traces sampled; a request with
	// a traceparent follows its caller's sampling decision unless
	// IgnoreParent.
	SampleRatio float64
	// IgnoreParent makes SampleRatio decide requests that arrive with a
	// traceparent too (by their trace id, as every gateway does alike);
	// the caller's sampled flag is then ignored. False: parent-based.
	IgnoreParent bool
	// Insecure sends to a host:port endpoint without TLS.
	Insecure bool
	// Headers are sent with every export.
	Headers map[string]string
	// Instance names this gateway (service.instance.id); "" leaves it out.
	Instance string
	// Logger receives the SDK's errors (a failed export). Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Provider makes cutover's spans. Its zero value is not usable: call New
// or NewWithProcessor. A nil *Provider must not be handed to the data
// plane as a proxy.Tracer (a non-nil interface): leave the option nil.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TraceContext
}

// MaxAttrLen bounds a span's string attribute values, in bytes: longer
// ones (a client's request path, say) are cut, so that a client cannot
// make the spans queued for export hold its input whole.
// OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT may set a smaller bound.
const MaxAttrLen = 1024

// tracerName is the instrumentation scope of every span.
const tracerName = "github.com/cutover-dev/cutover"

// New builds the OTLP exporter cfg describes and a provider that batches
// spans to it. It does not connect: an unreachable collector costs dropped
// spans, logged to cfg.Logger, never a request. The SDK's error handler is
// process-wide: New makes it cfg.Logger.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: spans not exported", "error", err) }))
	return newProvider(sdktrace.NewBatchSpanProcessor(exp), cfg), nil
}

// NewWithProcessor returns a provider whose spans go to sp, sampled at
// cfg.SampleRatio (its endpoint is not used): tests hand it a
// tracetest.SpanRecorder or a simple processor over an in-memory exporter.
func NewWithProcessor(sp sdktrace.SpanProcessor, cfg Config) *Provider {
	return newProvider(sp, cfg)
}

func newProvider(sp sdktrace.SpanProcessor, cfg Config) *Provider {
	attrs := []attribute.KeyValue{attribute.String("service.name", "cutover")}
	if cfg.Instance != "" {
		attrs = append(attrs, attribute.String("service.instance.id", cfg.Instance))
	}
	limits := sdktrace.NewSpanLimits() // OTEL_SPAN_* from the environment
	if l := limits.AttributeValueLengthLimit; l < 0 || l > MaxAttrLen {
		limits.AttributeValueLengthLimit = MaxAttrLen
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithRawSpanLimits(limits),
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithSampler(sampler(cfg)),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
	)
	return &Provider{tp: tp, tracer: tp.Tracer(tracerName)}
}

// sampler decides which traces are recorded (see Config.IgnoreParent).
func sampler(cfg Config) sdktrace.Sampler {
	ratio := sdktrace.TraceIDRatioBased(cfg.SampleRatio)
	if cfg.IgnoreParent {
		return ratio
	}
	return sdktrace.ParentBased(ratio)
}

// newExporter builds the OTLP exporter for cfg.Protocol.
func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	host, path, plain := cfg.Endpoint, "", cfg.Insecure
	if u, err := url.Parse(cfg.Endpoint); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		host, path, plain = u.Host, u.Path, u.Scheme == "http"
	}
	switch cfg.Protocol {
	case "", "http":
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(host)}
		if path == "" || path == "/" {
			path = "/v1/traces"
		}
		opts = append(opts, otlptracehttp.WithURLPath(path))
		if plain {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: otlp/http exporter for %q: %w", cfg.Endpoint, err)
		}
		return exp, nil
	case "grpc":
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(host)}
		if plain {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: otlp/grpc exporter for %q: %w", cfg.Endpoint, err)
		}
		return exp, nil
	}
	return nil, fmt.Errorf("tracing: unknown protocol %q (want http or grpc)", cfg.Protocol)
}

// Shutdown exports the spans still queued, within ctx, and stops the
// exporter. Spans ended later are dropped.
func (p *Provider) Shutdown(ctx context.Context) error {
	if err := p.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// ForceFlush exports every ended span now, within ctx.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// Span starts a control-plane span named name, a child of ctx's span when
// it has one, at start (zero: now), with attrs; end ends it with more
// attributes, and a non-nil err marks it failed with the error's text.
// With Propagation it is rollout.Tracer.
func (p *Provider) Span(ctx context.Context, name string, start time.Time, attrs ...slog.Attr) (context.Context, func(err error, attrs ...slog.Attr)) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(otelAttrs(attrs)...)}
	if !start.IsZero() {
		opts = append(opts, trace.WithTimestamp(start))
	}
	ctx, span := p.tracer.Start(ctx, name, opts...)
	return ctx, func(err error, attrs ...slog.Attr) {
		if len(attrs) > 0 {
			span.SetAttributes(otelAttrs(attrs)...)
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Propagation is the W3C trace context of ctx's span, "" without one.
func (p *Provider) Propagation(ctx context.Context) (traceparent, tracestate string) {
	var c traceHeaders
	p.prop.Inject(ctx, &c)
	return c.parent, c.state
}

// otelAttrs converts slog attributes (the controller's vocabulary) to
// span attributes; kinds without an equivalent become strings.
func otelAttrs(attrs []slog.Attr) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(attrs))
	for _, a := range attrs {
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindString:
			out = append(out, attribute.String(a.Key, v.String()))
		case slog.KindInt64:
			out = append(out, attribute.Int64(a.Key, v.Int64()))
		case slog.KindUint64:
			out = append(out, attribute.Int64(a.Key, int64(v.Uint64())))
		case slog.KindBool:
			out = append(out, attribute.Bool(a.Key, v.Bool()))
		case slog.KindFloat64:
			out = append(out, attribute.Float64(a.Key, v.Float64()))
		case slog.KindDuration:
			out = append(out, attribute.Float64(a.Key, v.Duration().Seconds()))
		default:
			out = append(out, attribute.String(a.Key, v.String()))
		}
	}
	return out
}

// Continue hands h requests whose context carries the caller's W3C trace
// context (traceparent, tracestate), when they sent one: the admin API's
// calls then become spans of the caller's trace (a CI job's, say).
func (p *Provider) Continue(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Traceparent"]; ok {
			// Every tracestate line, joined: W3C Trace Context makes them
			// one list (a HeaderCarrier gives the first alone).
			th := &traceHeaders{parent: r.Header.Get("Traceparent"), state: strings.Join(r.Header.Values("Tracestate"), ",")}
			r = r.WithContext(p.prop.Extract(r.Context(), th))
		}
		h.ServeHTTP(w, r)
	})
}
