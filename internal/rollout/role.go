package rollout

// Role is what a pool does now, as status, status --watch and the
// dashboard name it: one word per situation, decided here only.
type Role string

// The roles.
const (
	RoleLive      Role = "live"
	RoleCandidate Role = "candidate" // a deployment's new version before its promotion
	RoleRetained  Role = "retained"  // the old pool after a promotion, kept for rollback
	RoleRetiring  Role = "retiring"  // the old pool being drained and retired
	RoleStandby   Role = "standby"
)

// roleOf returns the role of pool name in st, given its current (else
// pending) deployment.
func roleOf(st *State, name string) Role {
	if name == st.Live {
		return RoleLive
	}
	d := st.active()
	if d == nil {
		d = st.pending()
	}
	if d == nil || d.Phase.Terminal() {
		return RoleStandby
	}
	switch {
	case d.Pool == name && d.Phase.BeforeCutover():
		return RoleCandidate
	case d.From == name && d.Phase == PhasePromoted:
		return RoleRetained
	case d.From == name && d.Phase == PhaseRetiring:
		return RoleRetiring
	}
	return RoleStandby
}
