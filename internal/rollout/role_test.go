package rollout

import "testing"

// TestRoleOf: the old pool after a promotion is "retained" in the one
// place that decides it (status, status --watch and the dashboard all show
// this field; regression: status said standby where the others said
// retained).
func TestRoleOf(t *testing.T) {
	dep := func(phase Phase) *Deployment {
		return &Deployment{ID: "d-1", Pool: "green", From: "blue", Phase: phase}
	}
	tests := []struct {
		name        string
		st          State
		blue, green Role
	}{
		{"no deployment", State{Live: "blue"}, RoleLive, RoleStandby},
		{"plain promote", State{Live: "green", Previous: "blue"}, RoleStandby, RoleLive},
		{"warming", State{Live: "blue", Deployments: []*Deployment{dep(PhaseWarming)}}, RoleLive, RoleCandidate},
		{"ready", State{Live: "blue", Deployments: []*Deployment{dep(PhaseReady)}}, RoleLive, RoleCandidate},
		{"promoted", State{Live: "green", Previous: "blue", Deployments: []*Deployment{dep(PhasePromoted)}}, RoleRetained, RoleLive},
		{"retiring", State{Live: "green", Previous: "blue", Deployments: []*Deployment{dep(PhaseRetiring)}}, RoleRetiring, RoleLive},
		{"completed", State{Live: "green", Previous: "blue", Deployments: []*Deployment{dep(PhaseCompleted)}}, RoleStandby, RoleLive},
		{"failed", State{Live: "blue", Deployments: []*Deployment{dep(PhaseFailed)}}, RoleLive, RoleStandby},
		{"rolled back", State{Live: "blue", Previous: "green", Deployments: []*Deployment{dep(PhaseRolledBack)}}, RoleLive, RoleStandby},
		{"pending behind a retirement", State{Live: "green", Previous: "blue", Deployments: []*Deployment{dep(PhaseRetiring),
			{ID: "d-2", Pool: "blue", From: "green", Phase: PhasePending}}}, RoleRetiring, RoleLive},
	}
	for _, tt := range tests {
		if b, g := roleOf(&tt.st, "blue"), roleOf(&tt.st, "green"); b != tt.blue || g != tt.green {
			t.Errorf("%s: blue %s, green %s; want %s, %s", tt.name, b, g, tt.blue, tt.green)
		}
	}
}
