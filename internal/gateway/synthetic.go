package gateway

import (
	"context"
	"net/http"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/synthetic"
	"github.com/cutover-dev/cutover/internal/validation"
)

// syntheticFunc loads validation.synthetic and returns its runner against
// a candidate pool's replicas; nil without a suite. A bad suite is a
// configuration error naming the key.
func (g *Gateway) syntheticFunc(cfg *config.Config) (validation.SyntheticFunc, error) {
	if cfg.Validation.Synthetic == "" {
		return nil, nil
	}
	suite, err := synthetic.Load(cfg.Validation.Synthetic)
	if err != nil {
		return nil, &config.Error{Fields: []*config.FieldError{{Key: "validation.synthetic", Msg: err.Error()}}}
	}
	client := &http.Client{Transport: g.tls.transport(0, 0)}
	modelName := cfg.ModelName
	return func(ctx context.Context, candidate *pool.Pool, each func(validation.Sample, bool)) int {
		var urls []string
		for _, r := range candidate.Replicas {
			urls = append(urls, r.Name)
		}
		r := &synthetic.Runner{HTTP: client, BaseURLs: urls, Model: candidate.Model, ClientModel: modelName,
			Authorize: func(base string, h http.Header) { g.currentReplica(candidate, base).SetAuthorization(h) }}
		rep := r.Run(ctx, suite, func(res synthetic.Result) {
			failed := res.TransportError != "" || res.Status >= 500 || res.StreamError
			each(validation.Sample{Failed: failed, Stream: res.Stream, Duration: res.Duration, TTFT: res.TTFT, Tokens: res.Tokens}, res.Pass)
		})
		g.log.Info("synthetic suite ran against the candidate", "pool", candidate.Name, "suite", cfg.Validation.Synthetic,
			"passed", rep.Passed, "failed", rep.Failed)
		return rep.Passed + rep.Failed
	}, nil
}

// currentReplica is the replica named base of the pool named as p is, as
// the routing table holds it now: a reload that reads the pool's key file
// again builds new replicas with the new key, and a request to the
// candidate (a synthetic one, a shadow copy) must carry that key, not the
// one of the replicas in place when the window began. p's own replica
// when the table has no such pool or replica any more.
func (g *Gateway) currentReplica(p *pool.Pool, base string) *pool.Replica {
	if cur := g.ctrl.Pool(p.Name); cur != nil {
		for _, r := range cur.Replicas {
			if r.Name == base {
				return r
			}
		}
	}
	for _, r := range p.Replicas {
		if r.Name == base {
			return r
		}
	}
	return &pool.Replica{}
}
