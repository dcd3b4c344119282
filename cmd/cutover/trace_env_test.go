package main

import (
	"testing"
	"time"
)

// TestCLITraceparentFromEnv: the CLI sends TRACEPARENT and TRACESTATE from
// its environment with its admin calls, and nothing without them.
func TestCLITraceparentFromEnv(t *testing.T) {
	t.Setenv("CUTOVER_ADMIN_TOKEN", "x")
	f := &ctlFlags{admin: "127.0.0.1:8081", timeout: time.Second}
	t.Setenv("TRACEPARENT", "")
	t.Setenv("TRACESTATE", "")
	c, err := f.client()
	if err != nil {
		t.Fatal(err)
	}
	if c.Traceparent != "" || c.Tracestate != "" {
		t.Errorf("without the variables: %q %q", c.Traceparent, c.Tracestate)
	}
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	t.Setenv("TRACEPARENT", tp)
	t.Setenv("TRACESTATE", "ci=1")
	if c, err = f.client(); err != nil {
		t.Fatal(err)
	}
	if c.Traceparent != tp || c.Tracestate != "ci=1" {
		t.Errorf("client trace context %q %q, want %q ci=1", c.Traceparent, c.Tracestate, tp)
	}
}
