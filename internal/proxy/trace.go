package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/route"
)

// Tracer starts the span of every proxied request: the gateway's
// OpenTelemetry set-up (package tracing). Options.Tracer nil means no
// tracing, and the serving paths then pay a nil check and nothing else.
type Tracer interface {
	// StartRequest starts the span of the request s describes. It is
	// called once the request's body is read, right before its first
	// attempt; s is valid only during the call.
	StartRequest(s *SpanStart) RequestSpan
}

// SpanStart is what is known of a request when its span starts.
type SpanStart struct {
	// Start is when the request arrived: the span's start.
	Start        time.Time
	Method, Path string
	// Pool is the pool the request was routed to.
	Pool string
	// RequestModel is the model the client asked for ("model" of its body,
	// or model_name when set), "" when none or longer than a model id can
	// be (192 bytes).
	RequestModel string
	// Traceparent and Tracestate are the client's W3C trace context
	// headers, "" when absent: the span continues that trace.
	Traceparent, Tracestate string
}

// RequestSpan is the span of one proxied request.
type RequestSpan interface {
	// Propagation is the trace context sent on to the replica in place of
	// the client's: the span's own traceparent, and the tracestate ("" for
	// none).
	Propagation() (traceparent, tracestate string)
	// Retry records a second attempt at at: replica failed with reason (a
	// gateway error code such as upstream_unreachable).
	Retry(at time.Time, replica, reason string)
	// End ends the span with what was observed of the request (o is valid
	// only during the call) and what was read of its answer for the span.
	End(o *Observation, a SpanAnswer)
}

// SpanAnswer is what the data plane reads of an answer for its span only,
// while tracing is on.
type SpanAnswer struct {
	// ResponseModel is the answer's "model", "" when not seen.
	ResponseModel string
	// InputTokens is usage.prompt_tokens, -1 when the answer carried none.
	InputTokens int
}

// reqTrace is the tracing side of one request: its span, the trace
// context the replica receives, and the scan of the answer.
type reqTrace struct {
	span        RequestSpan
	traceparent string
	tracestate  string
	scan        answerScan
}

// startTrace starts the span of a request bound for pool e of table t,
// with the client's trace context tp and ts.
func (h *Handler) startTrace(start time.Time, method, path string, t *route.Table, e *route.Entry, body []byte, bm *bodyModel, tp, ts string) *reqTrace {
	s := SpanStart{Start: start, Method: method, Path: path, Pool: e.Pool.Name, RequestModel: requestModel(t, body, bm),
		Traceparent: tp, Tracestate: ts}
	tr := &reqTrace{span: h.opts.Tracer.StartRequest(&s), scan: answerScan{input: -1}}
	tr.traceparent, tr.tracestate = tr.span.Propagation()
	return tr
}

// traceHTTP starts the span of a request on the net/http path and puts its
// trace context in the request's header, which both ways to the replica
// (Upstream's writer and outRequest's copy) send on.
func (h *Handler) traceHTTP(r *http.Request, start time.Time, t *route.Table, e *route.Entry, body []byte, bm *bodyModel) *reqTrace {
	tr := h.startTrace(start, r.Method, r.URL.Path, t, e, body, bm, headerValue(r.Header, "Traceparent"), tracestate(r.Header))
	delete(r.Header, "Tracestate")
	if tr.traceparent != "" {
		r.Header["Traceparent"] = []string{tr.traceparent}
	} else {
		delete(r.Header, "Traceparent")
	}
	if tr.tracestate != "" {
		r.Header["Tracestate"] = []string{tr.tracestate}
	}
	return tr
}

// tracestate is the client's tracestate: every such header line, joined
// with commas into one list as W3C Trace Context says; "" when none.
func tracestate(h http.Header) string {
	v := h["Tracestate"]
	if len(v) == 1 {
		return v[0]
	}
	return strings.Join(v, ",")
}

// traceLoop starts the span of a request the connection loop serves.
func (sc *srvConn) traceLoop(start time.Time, t *route.Table, e *route.Entry, body []byte, bm *bodyModel) *reqTrace {
	var tp, ts string
	for _, f := range sc.fields {
		switch name := sc.head[f.ns:f.ne]; {
		case tp == "" && equalFold(name, "traceparent"):
			tp = string(sc.head[f.vs:f.ve])
		case equalFold(name, "tracestate"):
			// W3C Trace Context: several tracestate lines are one list.
			if ts != "" {
				ts += ","
			}
			ts += string(sc.head[f.vs:f.ve])
		}
	}
	return sc.h.startTrace(start, sc.req.method, sc.req.path, t, e, body, bm, tp, ts)
}

// isTraceField reports the trace context header lines the loop replaces
// with the span's own.
func isTraceField(name []byte) bool {
	return equalFold(name, "traceparent") || equalFold(name, "tracestate")
}

// appendFields appends the span's trace context header lines to b.
func (tr *reqTrace) appendFields(b []byte) []byte {
	if tr.traceparent != "" {
		b = append(b, "Traceparent: "...)
		b = append(b, tr.traceparent...)
		b = append(b, "\r\n"...)
	}
	if tr.tracestate != "" {
		b = append(b, "Tracestate: "...)
		b = append(b, tr.tracestate...)
		b = append(b, "\r\n"...)
	}
	return b
}

// end ends the span with the observation.
func (tr *reqTrace) end(o *Observation) {
	tr.span.End(o, SpanAnswer{ResponseModel: tr.scan.model, InputTokens: tr.scan.input})
}

// requestModel is the model a request names: model_name when the table
// has one (requests naming another were refused), else its body's
// "model" when it is no longer than maxSpanModel (the client's input:
// a longer one is left out of the span). bm is the body's scan the
// request's other steps share.
func requestModel(t *route.Table, body []byte, bm *bodyModel) string {
	if len(body) == 0 {
		return ""
	}
	if t.ModelName != "" {
		return t.ModelName
	}
	if f, err := bm.scan(body); err == nil && f.isString && len(f.value) <= maxSpanModel {
		return f.model()
	}
	return ""
}

// answerScan finds, in an answer relayed piece by piece, its first
// "model" string and its last usage.prompt_tokens, with a carry of the
// previous pieces' tail for what straddles two of them.
type answerScan struct {
	model string
	input int // -1 until seen
	carry [2 * maxSpanModel]byte
	n     int
}

// maxSpanModel bounds the model ids a span reports (the request's and
// the answer's).
const maxSpanModel = 192

var (
	patModel  = []byte(`"model":`)
	patPrompt = []byte(`"prompt_tokens":`)
)

// scan looks at the next piece of the answer.
func (a *answerScan) scan(b []byte) {
	if len(b) == 0 {
		return
	}
	if a.n > 0 {
		var j [4 * maxSpanModel]byte
		w := append(j[:0], a.carry[:a.n]...)
		w = append(w, b[:min(len(b), len(j)-a.n)]...)
		a.find(w)
	}
	a.find(b)
	if len(b) >= len(a.carry) {
		a.n = copy(a.carry[:], b[len(b)-len(a.carry):])
		return
	}
	keep := min(a.n, len(a.carry)-len(b))
	copy(a.carry[:], a.carry[a.n-keep:a.n])
	a.n = keep + copy(a.carry[keep:], b)
}

// find looks for both patterns in b.
func (a *answerScan) find(b []byte) {
	for rest := b; a.model == ""; {
		i := bytes.Index(rest, patModel)
		if i < 0 {
			break
		}
		v := rest[i+len(patModel):]
		rest = v
		v = v[skipWS(v, 0):]
		if len(v) == 0 || v[0] != '"' {
			continue
		}
		end := bytes.IndexByte(v[1:], '"')
		if end > maxSpanModel || (end < 0 && len(v) > maxSpanModel+1) {
			continue // too long for a model id
		}
		if end < 0 {
			break // cut by the piece's end: the carry brings it whole
		}
		a.model = string(v[1 : 1+end])
	}
	for from := 0; ; {
		i := bytes.Index(b[from:], patPrompt)
		if i < 0 {
			return
		}
		from += i + len(patPrompt)
		if v, ok := parseInt(b[from:]); ok {
			a.input = v
		}
	}
}
