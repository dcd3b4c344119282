package gateway

import (
	"time"

	"github.com/cutover-dev/cutover/internal/fleet"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/shadow"
	"github.com/cutover-dev/cutover/internal/validation"
)

// joinSamples makes every gateway of the fleet record its own traffic of
// the current validation window (and, while validating, mirror its own
// live traffic to the candidate) and publish it, and the leader's
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
	if g.mirror != nil {
		rec.Mirror = g.mirrorWindow(v)
		// Copies left hanging count on the leader, its own and the
		// others' (published with their samples).
		rec.Unanswered, v.Unanswered = g.mirror.Unanswered, g.mirror.Unanswered
	}
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

// mirrorWindow points this gateway's shadow mirror at the candidate of a
// window that takes shadow copies, and stops it otherwise. Every gateway
// does, the leader too: each pair goes to the window's recorder (which
// publishes it) and to the leader's own validation window (v.AddPair, a
// no-op on a follower).
func (g *Gateway) mirrorWindow(v *validation.Validator) func(validation.Window, func(shadow.Pair)) {
	return func(w validation.Window, sink func(shadow.Pair)) {
		cand := g.ctrl.Pool(w.Candidate)
		if sink == nil || cand == nil {
			g.mirror.Stop()
			return
		}
		g.mirror.SetTarget(w.Live, cand, func(p shadow.Pair) {
			sink(p)
			v.AddPair(p)
		})
	}
}

// samplesWindow is the validation window of the applied state: the
// candidate against the live pool while validating (with shadow copies
// when configured), in a canary or ready; the new live pool alone during
// the post-promotion window.
func (g *Gateway) samplesWindow() validation.Window {
	d := g.ctrl.Status().Deployment
	if d == nil {
		return validation.Window{}
	}
	switch rollout.Phase(d.Phase) {
	case rollout.PhaseValidating:
		// Its own key: its shadow samples never reach a canary's gates.
		return validation.Window{Key: d.ID + "/validating", Live: d.From, Candidate: d.Pool, Shadow: g.mirror != nil}
	case rollout.PhaseCanary, rollout.PhaseReady:
		return validation.Window{Key: d.ID + "/pre", Live: d.From, Candidate: d.Pool}
	case rollout.PhasePromoted:
		if time.Now().Before(d.PostPromotionUntil) {
			return validation.Window{Key: d.ID + "/post", Candidate: d.Pool}
		}
	}
	return validation.Window{}
}
