package gateway

import (
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/validation"
)

// syntheticFunc returns the runner of validation.synthetic, nil without a
// suite.
func (g *Gateway) syntheticFunc(cfg *config.Config) (validation.SyntheticFunc, error) {
	if cfg.Validation.Synthetic == "" {
		return nil, nil
	}
	return nil, nil
}
