package main

import (
	"syscall"
	"testing"

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
	p.waitLog(t, "SIGHUP: configuration reloaded")
	waitAdmin(t, p, &api.Client{BaseURL: "http://" + c.admin, Token: "secret"})
}
