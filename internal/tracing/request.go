package tracing

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cutover-dev/cutover/internal/proxy"
)

// Span attributes of a proxied request: the GenAI semantic conventions,
// HTTP's, and cutover's own.
const (
	AttrOperation    = attribute.Key("gen_ai.operation.name")
	AttrRequestModel = attribute.Key("gen_ai.request.model")
	AttrRespModel    = attribute.Key("gen_ai.response.model")
	AttrInputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	AttrOutputTokens = attribute.Key("gen_ai.usage.output_tokens")
	// AttrTTFT is the time to the first token (a stream's first chunk, or
	// the first body bytes), in seconds; an event "gen_ai.first_token"
	// marks the same moment.
	AttrTTFT       = attribute.Key("gen_ai.server.time_to_first_token")
	AttrMethod     = attribute.Key("http.request.method")
	AttrStatus     = attribute.Key("http.response.status_code")
	AttrPath       = attribute.Key("url.path")
	AttrServerAddr = attribute.Key("server.address")
	AttrErrorType  = attribute.Key("error.type")
	AttrPool       = attribute.Key("cutover.pool")
	AttrReplica    = attribute.Key("cutover.replica")
	AttrStream     = attribute.Key("cutover.stream")
	AttrRetried    = attribute.Key("cutover.retried")
	AttrKey        = attribute.Key("cutover.key")
	// AttrTokensCounted marks gen_ai.usage.output_tokens counted from a
	// stream's events because the answer carried no usage.
	AttrTokensCounted = attribute.Key("cutover.output_tokens_counted")
)

// Events of a request span.
const (
	EventRetry      = "retry"
	EventFirstToken = "gen_ai.first_token"
)

// Operation is the GenAI operation of an OpenAI API path, "" for the
// others.
func Operation(path string) string {
	switch strings.TrimSuffix(path, "/") {
	case "/v1/chat/completions":
		return "chat"
	case "/v1/completions":
		return "text_completion"
	case "/v1/embeddings":
		return "embeddings"
	}
	return ""
}

// StartRequest starts a request's server span, continuing the client's
// trace context. It is proxy.Tracer.
func (p *Provider) StartRequest(s *proxy.SpanStart) proxy.RequestSpan {
	ctx := context.Background()
	if s.Traceparent != "" {
		ctx = p.prop.Extract(ctx, &traceHeaders{parent: s.Traceparent, state: s.Tracestate})
	}
	op := Operation(s.Path)
	name := s.Method + " " + s.Path
	if op != "" {
		name = op
		if s.RequestModel != "" {
			name += " " + s.RequestModel
		}
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, AttrMethod.String(s.Method), AttrPath.String(s.Path), AttrPool.String(s.Pool))
	if op != "" {
		attrs = append(attrs, AttrOperation.String(op))
	}
	if s.RequestModel != "" {
		attrs = append(attrs, AttrRequestModel.String(s.RequestModel))
	}
	_, span := p.tracer.Start(ctx, name, trace.WithTimestamp(s.Start), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return &requestSpan{span: span, p: p}
}

// requestSpan is proxy.RequestSpan over an OpenTelemetry span.
type requestSpan struct {
	span trace.Span
	p    *Provider
}

func (r *requestSpan) Propagation() (traceparent, tracestate string) {
	return r.p.Propagation(trace.ContextWithSpan(context.Background(), r.span))
}

// traceHeaders carries the two W3C trace context headers without a map.
type traceHeaders struct{ parent, state string }

var traceKeys = []string{"traceparent", "tracestate"}

func (h *traceHeaders) Get(key string) string {
	switch key {
	case "traceparent":
		return h.parent
	case "tracestate":
		return h.state
	}
	return ""
}

func (h *traceHeaders) Set(key, value string) {
	switch key {
	case "traceparent":
		h.parent = value
	case "tracestate":
		h.state = value
	}
}

func (h *traceHeaders) Keys() []string { return traceKeys }

var _ propagation.TextMapCarrier = (*traceHeaders)(nil)

func (r *requestSpan) Retry(at time.Time, replica, reason string) {
	r.span.AddEvent(EventRetry, trace.WithTimestamp(at), trace.WithAttributes(AttrReplica.String(replica), AttrErrorType.String(reason)))
}

func (r *requestSpan) End(o *proxy.Observation, a proxy.SpanAnswer) {
	s := r.span
	if !s.IsRecording() {
		s.End()
		return
	}
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs, AttrStatus.Int(o.Status), AttrStream.Bool(o.Stream))
	if o.Replica != nil {
		attrs = append(attrs, AttrReplica.String(o.Replica.Name))
		if o.Replica.URL != nil {
			if host, _, err := net.SplitHostPort(o.Replica.URL.Host); err == nil {
				attrs = append(attrs, AttrServerAddr.String(host))
			}
		}
	}
	if a.ResponseModel != "" {
		attrs = append(attrs, AttrRespModel.String(a.ResponseModel))
	}
	if a.InputTokens >= 0 {
		attrs = append(attrs, AttrInputTokens.Int(a.InputTokens))
	}
	if o.TokensFromUsage || (o.Stream && o.Tokens > 0) {
		attrs = append(attrs, AttrOutputTokens.Int(o.Tokens))
		if !o.TokensFromUsage {
			attrs = append(attrs, AttrTokensCounted.Bool(true))
		}
	}
	if o.TTFT > 0 {
		attrs = append(attrs, AttrTTFT.Float64(o.TTFT.Seconds()))
		s.AddEvent(EventFirstToken, trace.WithTimestamp(o.Start.Add(o.TTFT)))
	}
	if o.Retried {
		attrs = append(attrs, AttrRetried.Bool(true))
	}
	if o.Key != "" {
		attrs = append(attrs, AttrKey.String(o.Key))
	}
	if o.Error != "" {
		attrs = append(attrs, AttrErrorType.String(o.Error))
	}
	s.SetAttributes(attrs...)
	if o.Failed() {
		desc := o.Error
		if o.StreamError {
			desc = "error event in the stream"
		} else if desc == "" {
			desc = http.StatusText(o.Status)
		}
		s.SetStatus(codes.Error, desc)
	}
	s.End(trace.WithTimestamp(o.Start.Add(o.Duration)))
}

var _ proxy.Tracer = (*Provider)(nil)
