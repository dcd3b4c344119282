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
	client := &http.Client{Transport: g.tls.transport(0)}
	modelName := cfg.ModelName
	return func(ctx context.Context, candidate *pool.Pool, each func(validation.Sample, bool)) int {
		var urls []string
		for _, r := range candidate.Replicas {
			urls = append(urls, r.Name)
		}
		r := &synthetic.Runner{HTTP: client, BaseURLs: urls, Model: candidate.Model, ClientModel: modelName}
		if len(candidate.Replicas) > 0 && candidate.Replicas[0].Authorization != "" {
			// One pool, one key: every replica of it carries the same.
			r.Header = http.Header{"Authorization": {candidate.Replicas[0].Authorization}}
		}
		rep := r.Run(ctx, suite, func(res synthetic.Result) {
			failed := res.TransportError != "" || res.Status >= 500 || res.StreamError
			each(validation.Sample{Failed: failed, Stream: res.Stream, Duration: res.Duration, TTFT: res.TTFT, Tokens: res.Tokens}, res.Pass)
		})
		g.log.Info("synthetic suite ran against the candidate", "pool", candidate.Name, "suite", cfg.Validation.Synthetic,
			"passed", rep.Passed, "failed", rep.Failed)
		return rep.Passed + rep.Failed
	}, nil
}
