package gateway

import (
	"net/textproto"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/secret"
)

// canarySettings converts the configured canary strategy; blue-green
// gives no steps.
func canarySettings(ro config.Rollout) rollout.CanarySettings {
	if !ro.CanaryStrategy() {
		return rollout.CanarySettings{}
	}
	s := rollout.CanarySettings{AffinityHeader: ro.Affinity.Header, AffinityHash: ro.Affinity.Hash}
	for _, st := range ro.Canary.Steps {
		s.Steps = append(s.Steps, rollout.CanaryStep{Weight: st.Weight, Pause: st.Pause.D()})
	}
	return s
}

// poolHeaderOptions returns the pool header (canonical form) and its
// token for the data plane, both "" when routing.pool_header is off.
func poolHeaderOptions(cfg *config.Config) (header, token string, err error) {
	r := cfg.Routing
	if r.PoolHeader == "" {
		return "", "", nil
	}
	token, err = secret.ReadFile(r.PoolHeaderTokenFile)
	if err != nil {
		return "", "", &config.Error{Fields: []*config.FieldError{{Key: "routing.pool_header_token_file", Msg: err.Error()}}}
	}
	return textproto.CanonicalMIMEHeaderKey(r.PoolHeader), token, nil
}
