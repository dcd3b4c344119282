package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestStatusShowsGatewaysBehindTheGates: in a fleet, status says over how
// many gateways' traffic the gates are; a single gateway says nothing.
func TestStatusShowsGatewaysBehindTheGates(t *testing.T) {
	tests := []struct {
		name     string
		gateways int
		want     string
	}{
		{"fleet", 3, "  gates     over the traffic of 3 gateways\n"},
		{"single gateway", 0, "  gates\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &api.Deployment{ID: "d-1", Pool: "green", Phase: "canary", GatesFromGateways: tt.gateways,
				Gates: []api.Gate{{Name: "error_rate", Verdict: "pass", Op: "<=", Threshold: 0.02, Samples: 40, MinSamples: 20}}}
			var b bytes.Buffer
			printDeployment(&b, d)
			if !strings.Contains(b.String(), tt.want) {
				t.Fatalf("status:\n%s\nwant %q", b.String(), tt.want)
			}
		})
	}
}
