package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
)

// llmOptions maps the balancing keys to the llm balancer's options;
// stale_after 0 means 3 metrics intervals.
func llmOptions(b config.Balancing) pool.LLMOptions {
	stale := b.StaleAfter.D()
	if stale == 0 {
		stale = 3 * b.MetricsInterval.D()
	}
	return pool.LLMOptions{
		QueueWeight: b.QueueWeight, KVWeight: b.KVWeight, PrefixWeight: b.PrefixWeight,
		MaxQueue: b.MaxQueue, MaxKV: b.MaxKV, StaleAfter: stale,
		BlockBytes: b.PrefixBlockBytes, AffinityEntries: b.AffinityEntries,
		QueueTimeout: b.QueueTimeout.D(), QueueLength: b.QueueLength,
	}
}

// runScraper reads every replica's engine metrics for the llm balancer
// until ctx ends; with another balancer it returns at once.
func (g *Gateway) runScraper(ctx context.Context) {
	if g.cfg.Balancer != "llm" || g.ctrl == nil {
		return
	}
	s := &pool.Scraper{
		Client:   &http.Client{Transport: g.tls.transport(0, 0)},
		Interval: g.cfg.Balancing.MetricsInterval.D(),
		Targets:  g.ctrl.Targets,
		Logger:   g.log,
	}
	s.Run(ctx)
}

// gatewayQueue returns the status's view of the llm balancer's gateway
// queue; nil with another balancer.
func gatewayQueue(p pool.Picker) func(string) (api.GatewayQueue, bool) {
	l, ok := p.(*pool.LLM)
	if !ok {
		return nil
	}
	return func(name string) (api.GatewayQueue, bool) {
		st, ok := l.QueueStats(name)
		return api.GatewayQueue{Waiting: st.Waiting, Held: st.Held, Dispatched: st.Dispatched, TimedOut: st.TimedOut,
			Canceled: st.Canceled, Overflowed: st.Overflowed, WaitSeconds: st.WaitSeconds}, ok
	}
}

// engineBusy returns, with a load balancer driver, what tells the
// retirement's drain how many requests a pool's engines still hold (the
// sum of vLLM's num_requests_running and num_requests_waiting, or
// SGLang's, over its replicas); nil with the builtin driver, whose own
// count is exact.
func (g *Gateway) engineBusy() func(ctx context.Context, p *pool.Pool) (int, error) {
	if g.cfg.Driver == "" || g.cfg.Driver == "builtin" {
		return nil
	}
	s := &pool.Scraper{Client: &http.Client{Transport: g.tls.transport(0, 0)}, Timeout: 2 * time.Second}
	return func(ctx context.Context, p *pool.Pool) (int, error) {
		// At once: one replica that hangs costs the reconcile loop one
		// timeout, not one per replica.
		busy := make([]float64, len(p.Replicas))
		errs := make([]error, len(p.Replicas))
		var wg sync.WaitGroup
		for i, r := range p.Replicas {
			wg.Go(func() {
				e, err := s.Read(ctx, r)
				switch {
				case err != nil && !r.Healthy():
					// down: it serves nothing (its checks say so)
				case err != nil:
					errs[i] = err
				default:
					busy[i] = e.Running + e.Waiting
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return 0, err
		}
		total := 0.0
		for _, b := range busy {
			total += b
		}
		return int(math.Ceil(total)), nil
	}
}
