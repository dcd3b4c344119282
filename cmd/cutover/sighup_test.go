package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// TestSIGHUPWithoutTLSKeepsServing: the unit's ExecReload sends SIGHUP;
// without a tls block it used to end the process (Go's default action).
func TestSIGHUPWithoutTLSKeepsServing(t *testing.T) {
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1)}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	waitAdmin(t, p, &api.Client{BaseURL: "http://" + c.admin, Token: "secret"})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.stderr.String(), "SIGHUP: configuration reloaded") {
		select {
		case err := <-p.done:
			p.done <- err // for start's cleanup
			t.Fatalf("cutover exited after SIGHUP: %v\n%s", err, p.stderr.String())
		case <-deadline:
			t.Fatalf("no SIGHUP log line after 30s:\n%s", p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	waitAdmin(t, p, &api.Client{BaseURL: "http://" + c.admin, Token: "secret"})
}
