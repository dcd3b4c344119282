package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// launchedBy gives pool green of v one replica launched through agent
// gpu-a (id r1), and the agents as agents.
func launchedBy(agents ...api.AgentStatus) func(*View) {
	return func(v *View) {
		p := v.State.Pools["green"]
		p.Launched = []LaunchedReplica{{Agent: "gpu-a", ID: "r1", URL: "http://10.0.0.1:8100", GPUs: 1}}
		v.State.Pools["green"] = p
		v.Agents = agentsByName(agents)
	}
}

// TestPromoteNeedsReplicasInSight: no deployment promotes onto replicas
// the controller cannot see through their agents; status.actions says why.
func TestPromoteNeedsReplicasInSight(t *testing.T) {
	running := []api.AgentReplica{{ID: "r1", State: "running"}}
	down := api.AgentStatus{Name: "gpu-a", Up: false, Since: t0.Add(-time.Minute), LastError: "dial tcp 10.0.0.1:9090: connection refused"}
	for _, tc := range []struct {
		name string
		v    View
		code string
		in   []string
	}{
		{"agent up, replica running", with(scene("blue", dep("d-1", "green", PhaseReady)), launchedBy(api.AgentStatus{Name: "gpu-a", Up: true, Replicas: running})), "", nil},
		{"agent down", with(scene("blue", dep("d-1", "green", PhaseReady)), launchedBy(down)),
			"agent_down", []string{"agent gpu-a is down since", "connection refused", "blue stays live"}},
		{"agent not configured", with(scene("blue", dep("d-1", "green", PhaseReady)), launchedBy(api.AgentStatus{Name: "gpu-b", Up: true})),
			"replica_lost", []string{"its agent gpu-a is not configured"}},
		{"replica gone from the agent", with(scene("blue", dep("d-1", "green", PhaseReady)), launchedBy(api.AgentStatus{Name: "gpu-a", Up: true})),
			"replica_lost", []string{"agent gpu-a no longer lists replica r1"}},
		{"replica exited", with(scene("blue", dep("d-1", "green", PhaseReady)), launchedBy(api.AgentStatus{Name: "gpu-a", Up: true, Replicas: []api.AgentReplica{{ID: "r1", State: "exited"}}})),
			"replica_lost", []string{"replica r1 is exited at agent gpu-a"}},
		{"no deployment, standby on a down agent", with(scene("blue"), launchedBy(down)), "agent_down", []string{"pool green"}},
		{"no agents configured", with(scene("blue", dep("d-1", "green", PhaseReady)), func(v *View) {
			p := v.State.Pools["green"]
			p.Launched = []LaunchedReplica{{Agent: "gpu-a", ID: "r1"}}
			v.State.Pools["green"] = p
		}), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.v.State.Pools["green"].Model == "" { // scene without a deployment: green as configured
				p := tc.v.State.Pools["green"]
				p.Model, p.Replicas = "mg", []string{"http://10.0.0.1:8100"}
				tc.v.State.Pools["green"] = p
			}
			dec := decidePromote(tc.v, api.PromoteRequest{})
			if tc.code == "" {
				if !dec.Allowed {
					t.Fatalf("refused: %s %s", dec.Code, dec.Reason)
				}
				return
			}
			if dec.Allowed || dec.Code != tc.code {
				t.Fatalf("got allowed=%v %s (%s), want refused %s", dec.Allowed, dec.Code, dec.Reason, tc.code)
			}
			for _, s := range tc.in {
				if !strings.Contains(dec.Reason, s) {
					t.Fatalf("reason %q lacks %q", dec.Reason, s)
				}
			}
			if a := actions(tc.v)["promote"]; a.Allowed || a.Code != tc.code {
				t.Fatalf("status.actions.promote = %+v, want refused %s", a, tc.code)
			}
		})
	}
}
