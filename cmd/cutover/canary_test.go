package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestStatusShowsCanary: status and --watch show the step and weight of a
// canary; a wait for ready is not done while it steps.
func TestStatusShowsCanary(t *testing.T) {
	now := time.Now()
	d := &api.Deployment{ID: "d-1", Pool: "green", Phase: "canary", PhaseSince: now, Deadline: now.Add(10 * time.Minute), DeadlineKind: "canary_step",
		Canary: &api.Canary{Step: 2, Steps: 3, Weight: 25, StepStartedAt: now, StepEndsAt: now.Add(10 * time.Minute)}}
	var b bytes.Buffer
	printDeployment(&b, d)
	if !strings.Contains(b.String(), "canary    step 2/3: 25% of new requests to green; the step ends in ") || !strings.Contains(b.String(), "step end") {
		t.Fatalf("status:\n%s", b.String())
	}
	lines := deploymentProgress(&api.Status{}, d, now)
	if len(lines) == 0 || lines[0].label != "weight" || lines[0].frac != 0.25 {
		t.Fatalf("watch progress: %+v", lines)
	}
	d.Canary.StepEndsAt = time.Time{}
	if n := canaryNote(d); !strings.HasSuffix(n, "until `cutover promote`") {
		t.Fatalf("manual step: %s", n)
	}
	d.Phase = "failed"
	if n := canaryNote(d); n != "" {
		t.Fatalf("failed canary: %q", n)
	}
	if done, failed := waitVerdict("canary", "ready"); done || failed {
		t.Fatalf("wait for ready during a canary: done %v failed %v", done, failed)
	}
	if done, _ := waitVerdict("ready", "ready"); !done {
		t.Fatal("wait for ready after the canary")
	}
	// A canary holding its last, manual step waits for promote: ready, for
	// a wait (a regression: deploy --wait never ended with such steps).
	manual := &api.Deployment{Phase: "canary", Canary: &api.Canary{Step: 2, Steps: 2, Weight: 50}}
	if !awaitsPromote(manual) {
		t.Fatal("last manual step: not ready to promote")
	}
	for _, d := range []*api.Deployment{
		{Phase: "canary", Canary: &api.Canary{Step: 1, Steps: 2, Weight: 10}},
		{Phase: "canary", Canary: &api.Canary{Step: 2, Steps: 2, Weight: 50, StepEndsAt: time.Now()}},
		{Phase: "failed", Canary: &api.Canary{Step: 2, Steps: 2, Weight: 0}},
	} {
		if awaitsPromote(d) {
			t.Fatalf("%s step %d/%d (ends %v): ready to promote", d.Phase, d.Canary.Step, d.Canary.Steps, d.Canary.StepEndsAt)
		}
	}
}

// TestStatusShowsWaitingBesideGates: a promoted deployment's note (the
// retained pool kept awake) is shown although the deployment has gates (a
// regression: any gate hid it); while the gates are evaluated their lines
// stand for it.
func TestStatusShowsWaitingBesideGates(t *testing.T) {
	gates := []api.Gate{{Name: "error_rate", Value: 0.01, Threshold: 0.05, Op: "<=", Samples: 100, MinSamples: 100, Verdict: "pass"}}
	for _, tc := range []struct {
		phase string
		shown bool
	}{{"promoted", true}, {"validating", false}, {"canary", false}} {
		d := &api.Deployment{ID: "d-1", Pool: "green", From: "blue", Phase: tc.phase, Gates: gates,
			Waiting: "kept awake (no sleep mode): http://10.0.0.1:8000"}
		var b bytes.Buffer
		printDeployment(&b, d)
		if got := strings.Contains(b.String(), "waiting   kept awake"); got != tc.shown {
			t.Errorf("%s: the note shown %v, want %v:\n%s", tc.phase, got, tc.shown, b.String())
		}
	}
}
