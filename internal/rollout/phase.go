package rollout

// Phase is where a deployment is in its lifecycle.
type Phase string

// The phases. The way forward is pending (only when an earlier deployment
// must retire first) → the pre-cutover phases → promoted → retiring →
// completed; failed, aborted and rolled_back are the side exits.
const (
	PhasePending    Phase = "pending"
	PhaseWarming    Phase = "warming"
	PhaseValidating Phase = "validating"
	PhaseCanary     Phase = "canary"
	PhaseReady      Phase = "ready"
	PhasePromoted   Phase = "promoted"
	PhaseRetiring   Phase = "retiring"
	PhaseCompleted  Phase = "completed"
	PhaseFailed     Phase = "failed"
	PhaseAborted    Phase = "aborted"
	PhaseRolledBack Phase = "rolled_back"
)

// preCutover lists, in order, the phases a deployment goes through before
// it may be promoted; the last one waits for the promotion. A new check
// is a new phase inserted here with its reconcile step. Validating is
// skipped when no validation is configured, canary without the canary
// strategy (the canary gets client traffic, but never all of it).
var preCutover = []Phase{PhaseWarming, PhaseValidating, PhaseCanary, PhaseReady}

// known reports whether p is one of the phases above.
func (p Phase) known() bool {
	switch p {
	case PhasePending, PhaseWarming, PhaseValidating, PhaseCanary, PhaseReady, PhasePromoted,
		PhaseRetiring, PhaseCompleted, PhaseFailed, PhaseAborted, PhaseRolledBack:
		return true
	}
	return false
}

// Terminal reports whether p is an end state.
func (p Phase) Terminal() bool {
	switch p {
	case PhaseCompleted, PhaseFailed, PhaseAborted, PhaseRolledBack:
		return true
	}
	return false
}

// BeforeCutover reports whether the deployment's pool never got client
// traffic in phase p (pending included).
func (p Phase) BeforeCutover() bool {
	if p == PhasePending {
		return true
	}
	for _, q := range preCutover {
		if p == q {
			return true
		}
	}
	return false
}

// nextPreCutover returns the phase after p among the pre-cutover phases,
// skipping those for which skip is true.
func nextPreCutover(p Phase, skip func(Phase) bool) Phase {
	for i, q := range preCutover {
		if q != p {
			continue
		}
		for _, n := range preCutover[i+1:] {
			if !skip(n) {
				return n
			}
		}
	}
	return PhaseReady
}
