package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/tracing"
)

// WithTracing makes the gateway trace through p instead of what the
// configuration's tracing block builds; the caller keeps it (and shuts it
// down). Tests hand it a provider over an in-memory exporter.
func WithTracing(p *tracing.Provider) Option { return func(o *options) { o.tracer = p } }

// tracingFlushTimeout bounds the export of the last spans at shutdown.
const tracingFlushTimeout = 5 * time.Second

// setupTracing takes given, or builds the exporter cfg.Tracing describes;
// without either the gateway traces nothing.
func (g *Gateway) setupTracing(ctx context.Context, cfg *config.Config, given *tracing.Provider) error {
	if given != nil {
		g.tracer = given
		return nil
	}
	t := cfg.Tracing
	if t == nil {
		return nil
	}
	p, err := tracing.New(ctx, tracing.Config{Endpoint: t.Endpoint, Protocol: t.Protocol, SampleRatio: t.Ratio(), IgnoreParent: !t.FollowParent(),
		Insecure: t.Insecure, Headers: t.Headers, Instance: fleetName(cfg), Logger: g.log})
	if err != nil {
		return err
	}
	g.tracer, g.ownTracer = p, true
	g.log.Info("tracing on", "endpoint", t.Endpoint, "protocol", t.Protocol, "sample_ratio", t.Ratio(), "parent_based", t.FollowParent())
	return nil
}

// requestTracer is the data plane's tracer: nil (no cost) when off.
func (g *Gateway) requestTracer() proxy.Tracer {
	if g.tracer == nil {
		return nil
	}
	return g.tracer
}

// controlTracer is the controller's tracer: nil when off.
func (g *Gateway) controlTracer() rollout.Tracer {
	if g.tracer == nil {
		return nil
	}
	return g.tracer
}

// continueTrace makes the admin API's calls spans of their caller's trace
// when tracing is on; h as is when it is off.
func (g *Gateway) continueTrace(h http.Handler) http.Handler {
	if g.tracer == nil {
		return h
	}
	return g.tracer.Continue(h)
}

// stopTracing exports the spans still queued and stops the exporter the
// gateway built.
func (g *Gateway) stopTracing() {
	if g.tracer == nil || !g.ownTracer {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := g.tracer.Shutdown(ctx); err != nil {
		g.log.Warn("tracing: spans lost at shutdown", "error", err)
	}
	g.tracer = nil
}
