package main

import (
	"fmt"

	"github.com/cutover-dev/cutover/api"
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
	default:
		s += fmt.Sprintf("; the step ends %s, then advances once the gates pass", until(c.StepEndsAt))
	}
	return s
}
