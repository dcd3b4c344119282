package gateway

import (
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/rollout"
)

// newApplier returns what applies routing tables for cfg.Driver.
func (g *Gateway) newApplier(cfg *config.Config) (rollout.Applier, error) {
	return builtin{g.proxy}, nil
}
