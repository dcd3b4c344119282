package rollout

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/hook"
)

// Tracer records the controller's work as spans (package tracing): each
// admin call that changes the state (promote, rollback, deploy, abort,
// retire), every hook run and, under the call, every transition committed
// to the store. Options.Tracer nil records nothing.
type Tracer interface {
	// Span starts a span named name, a child of ctx's span when it has
	// one, at start (zero: now), with attrs; end ends it with more
	// attributes, and a non-nil err marks it failed.
	Span(ctx context.Context, name string, start time.Time, attrs ...slog.Attr) (_ context.Context, end func(err error, attrs ...slog.Attr))
	// Propagation is the W3C trace context of ctx's span, "" without one.
	Propagation(ctx context.Context) (traceparent, tracestate string)
}

func noEnd(error, ...slog.Attr) {}

// span starts the span of the admin call named call by actor.
func (c *Controller) span(ctx context.Context, call, actor string) (context.Context, func(error, ...slog.Attr)) {
	if c.opts.Tracer == nil {
		return ctx, noEnd
	}
	return c.opts.Tracer.Span(ctx, "cutover.api."+call, time.Time{}, slog.String("cutover.actor", actor))
}

// traceEvents records committed events as spans under ctx's span,
// cutover.transition.<action>; a hook's outcome is not one (tracedHooks
// made its span while it ran).
func (c *Controller) traceEvents(ctx context.Context, evs []event) {
	if c.opts.Tracer == nil {
		return
	}
	for _, e := range evs {
		if e.Hook != nil {
			continue
		}
		attrs := []slog.Attr{slog.String("cutover.action", e.Action), slog.Int64("cutover.revision", e.Revision), slog.String("cutover.actor", e.Actor)}
		for _, kv := range [][2]string{{"cutover.deployment", e.Deployment}, {"cutover.from", e.From}, {"cutover.to", e.To}, {"cutover.reason", e.Reason}} {
			if kv[1] != "" {
				attrs = append(attrs, slog.String(kv[0], kv[1]))
			}
		}
		if e.Forced {
			attrs = append(attrs, slog.Bool("cutover.forced", true))
		}
		var err error
		if strings.HasSuffix(e.Action, "_failed") {
			err = errors.New(e.Reason)
		}
		_, end := c.opts.Tracer.Span(ctx, "cutover.transition."+e.Action, time.Time{}, attrs...)
		end(err)
	}
}

// tracedHooks runs each hook inside a span, cutover.hook.<event>, whose
// trace context the hook receives (hook.Payload.Traceparent).
type tracedHooks struct {
	HookRunner
	t Tracer
}

func (h tracedHooks) Run(ctx context.Context, s hook.Spec, p hook.Payload) hook.Outcome {
	ctx, end := h.t.Span(ctx, "cutover.hook."+p.Event, time.Time{}, slog.String("cutover.hook", s.Name()),
		slog.String("cutover.deployment", p.Deployment), slog.String("cutover.pool", p.Pool))
	p.Traceparent, p.Tracestate = h.t.Propagation(ctx)
	o := h.HookRunner.Run(ctx, s, p)
	attrs := []slog.Attr{slog.Bool("cutover.hook.ok", o.OK), slog.Int64("cutover.hook.duration_ms", o.DurationMS)}
	if o.ExitCode != 0 {
		attrs = append(attrs, slog.Int("cutover.hook.exit_code", o.ExitCode))
	}
	if o.Status != 0 {
		attrs = append(attrs, slog.Int("http.response.status_code", o.Status))
	}
	var err error
	if !o.OK {
		err = errors.New(o.Summary())
	}
	end(err, attrs...)
	return o
}
