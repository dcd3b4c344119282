package gateway

import (
	"time"

	"github.com/cutover-dev/cutover/internal/fleet"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/validation"
)

// joinSamples makes every gateway of the fleet record its own traffic of
// the current validation window and publish it, and the leader's
// validator merge the others' before the gates.
func (g *Gateway) joinSamples() {
	var v *validation.Validator
	for _, o := range g.observers {
		if x, ok := o.(*validation.Validator); ok {
			v = x
		}
	}
	if v == nil {
		return // no validation configured: nothing to share
	}
	rec := &validation.Recorder{Adjust: v.Adjust}
	g.observers = append(g.observers, rec)
	g.fleet.samples = fleet.NewSamples(fleet.SamplesOptions{
		Store:    g.fleet.etcd,
		Name:     g.cfg.FleetName(),
		TTL:      g.cfg.Etcd.SessionTTL.D(),
		Window:   g.samplesWindow,
		Recorder: rec,
		Logger:   g.log,
	})
	v.Remote = g.fleet.samples.Remote
}

// samplesWindow is the validation window of the applied state: the
// candidate against the live pool while validating, in a canary or ready;
// the new live pool alone during the post-promotion window.
func (g *Gateway) samplesWindow() validation.Window {
	d := g.ctrl.Status().Deployment
	if d == nil {
		return validation.Window{}
	}
	switch rollout.Phase(d.Phase) {
	case rollout.PhaseValidating, rollout.PhaseCanary, rollout.PhaseReady:
		return validation.Window{Key: d.ID + "/pre", Live: d.From, Candidate: d.Pool}
	case rollout.PhasePromoted:
		if time.Now().Before(d.PostPromotionUntil) {
			return validation.Window{Key: d.ID + "/post", Candidate: d.Pool}
		}
	}
	return validation.Window{}
}
