package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestStatusShowsGatewaysBehindTheGates: in a fleet, status says over how
// many gateways' traffic the gates are (and from how many the shadow
// copies come); a single gateway says nothing.
func TestStatusShowsGatewaysBehindTheGates(t *testing.T) {
	tests := []struct {
		name             string
		gateways, shadow int
		want             string
	}{
		{"fleet", 3, 0, "  gates     over the traffic of 3 gateways\n"},
		{"fleet validating with shadow copies", 3, 2, "  gates     over the traffic of 3 gateways, shadow copies from 2\n"},
		{"single gateway", 0, 0, "  gates\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &api.Deployment{ID: "d-1", Pool: "green", Phase: "canary", GatesFromGateways: tt.gateways, ShadowFromGateways: tt.shadow,
				Gates: []api.Gate{{Name: "error_rate", Verdict: "pass", Op: "<=", Threshold: 0.02, Samples: 40, MinSamples: 20}}}
			var b bytes.Buffer
			printDeployment(&b, d)
			if !strings.Contains(b.String(), tt.want) {
				t.Fatalf("status:\n%s\nwant %q", b.String(), tt.want)
			}
		})
	}
}
