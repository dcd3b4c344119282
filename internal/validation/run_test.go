package validation

import (
	"testing"

	"github.com/cutover-dev/cutover/internal/proxy"
)

// TestRunKeepsHungUpFailures: a client that hung up says nothing of the
// version and is left out, unless the stream had already carried an error
// event: that failure counts.
func TestRunKeepsHungUpFailures(t *testing.T) {
	r := &Run{live: "blue", candidate: "green"}
	r.observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true, Error: "client_closed"})
	r.observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true, Error: "client_closed", StreamError: true})
	r.observe(&proxy.Observation{Pool: "green", Status: 200, Stream: true})
	if len(r.cand) != 2 {
		t.Fatalf("%d candidate samples, want 2 (the plain hang-up left out)", len(r.cand))
	}
	if !r.cand[0].Failed || r.cand[1].Failed {
		t.Errorf("samples %+v: want the stream error failed and the clean answer not", r.cand)
	}
}
