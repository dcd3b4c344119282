package main

import (
	"fmt"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
)

// canaryNote describes d's canary step for status and --watch: the step,
// the weight and how it ends; "" when d is no canary in progress.
func canaryNote(d *api.Deployment) string {
	c := d.Canary
	if c == nil || (d.Phase != "canary" && d.Phase != "ready") {
		return ""
	}
	s := fmt.Sprintf("step %d/%d: %d%% of new requests to %s", c.Step, c.Steps, c.Weight, d.Pool)
	switch {
	case d.Phase == "ready":
		s += " (steps done; promote switches 100%)"
	case c.StepEndsAt.IsZero():
		s += " until `cutover promote`"
	case time.Until(c.StepEndsAt) < 0:
		s += fmt.Sprintf("; the step's pause ended %s: it advances once the gates pass", until(c.StepEndsAt))
	default:
		s += fmt.Sprintf("; the step ends %s, then advances once the gates pass", until(c.StepEndsAt))
	}
	return s
}

// demoCanary sets the demo's canary strategy: a short automatic step,
// then a step that waits for cutover promote, with session affinity.
func demoCanary(cfg *config.Config) {
	cfg.Rollout.Strategy = config.StrategyCanary
	cfg.Rollout.Canary.Steps = []config.CanaryStep{{Weight: 10, Pause: config.Duration(30 * time.Second)}, {Weight: 50}}
	cfg.Rollout.Affinity.Header = "X-Session-Id"
}
