package rollout

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// Tracer records the controller's work as spans (package tracing): each
// admin call that changes the state (promote, rollback, deploy, abort,
// retire) and, under it, every transition committed to the store; a
// hook's transition spans the hook's run. Options.Tracer nil records
// nothing.
type Tracer interface {
	// Span starts a span named name, a child of ctx's span when it has
	// one, at start (zero: now), with attrs; end ends it, and a non-nil
	// err marks it failed.
	Span(ctx context.Context, name string, start time.Time, attrs ...slog.Attr) (_ context.Context, end func(err error))
}

func noEnd(error) {}

// span starts the span of the admin call named call by actor.
func (c *Controller) span(ctx context.Context, call, actor string) (context.Context, func(error)) {
	if c.opts.Tracer == nil {
		return ctx, noEnd
	}
	return c.opts.Tracer.Span(ctx, "cutover.api."+call, time.Time{}, slog.String("cutover.actor", actor))
}

// traceEvents records committed events as spans under ctx's span:
// cutover.transition.<action>, or cutover.hook.<event> for a hook's
// outcome, from the hook's start.
func (c *Controller) traceEvents(ctx context.Context, evs []event) {
	if c.opts.Tracer == nil {
		return
	}
	for _, e := range evs {
		attrs := []slog.Attr{slog.String("cutover.action", e.Action), slog.Int64("cutover.revision", e.Revision), slog.String("cutover.actor", e.Actor)}
		for _, kv := range [][2]string{{"cutover.deployment", e.Deployment}, {"cutover.from", e.From}, {"cutover.to", e.To}, {"cutover.reason", e.Reason}} {
			if kv[1] != "" {
				attrs = append(attrs, slog.String(kv[0], kv[1]))
			}
		}
		if e.Forced {
			attrs = append(attrs, slog.Bool("cutover.forced", true))
		}
		name, start := "cutover.transition."+e.Action, time.Time{}
		var err error
		if strings.HasSuffix(e.Action, "_failed") {
			err = errors.New(e.Reason)
		}
		if h := e.Hook; h != nil {
			name, start = "cutover.hook."+h.Event, h.Start
			attrs = append(attrs, slog.String("cutover.hook", h.Hook), slog.Bool("cutover.hook.ok", h.OK),
				slog.Int64("cutover.hook.duration_ms", h.DurationMS))
			if h.ExitCode != 0 {
				attrs = append(attrs, slog.Int("cutover.hook.exit_code", h.ExitCode))
			}
			if h.Status != 0 {
				attrs = append(attrs, slog.Int("http.response.status_code", h.Status))
			}
			if !h.OK {
				err = errors.New(h.Summary())
			}
		}
		_, end := c.opts.Tracer.Span(ctx, name, start, attrs...)
		end(err)
	}
}
