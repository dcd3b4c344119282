package gateway

import (
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/rollout"
)

// canarySettings converts the configured canary strategy; blue-green
// gives no steps.
func canarySettings(ro config.Rollout) rollout.CanarySettings {
	if !ro.CanaryStrategy() {
		return rollout.CanarySettings{}
	}
	s := rollout.CanarySettings{AffinityHeader: ro.Affinity.Header}
	for _, st := range ro.Canary.Steps {
		s.Steps = append(s.Steps, rollout.CanaryStep{Weight: st.Weight, Pause: st.Pause.D()})
	}
	return s
}
