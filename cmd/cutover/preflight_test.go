package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestPreflightRefusesDeadPool: over real processes, a standby whose
// replica answers /health and /v1/models but fails every completion is
// not promoted (CLI exit 1 with the replica and its answer, admin API 409
// preflight_failed, a history event, traffic stays on blue); once it
// answers, the promote goes through, and a rollback onto a blue that
// fails completions is refused the same way. Before the preflight the
// promote succeeded and every client request then got a 500.
func TestPreflightRefusesDeadPool(t *testing.T) {
	mock := func(model string) (*mockllm.Server, string) {
		m, err := mockllm.New(mockllm.Config{Model: model, Tokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		return m, mockPoolWith(t, m)
	}
	blue, blueURL := mock("model-v1")
	green, greenURL := mock("model-v2")
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(), blue: []string{blueURL}, green: []string{greenURL}}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	client := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, client)
	awaitHealthy(t, client, "green", 1)
	env := []string{"CUTOVER_ADMIN_TOKEN=secret"}
	admin := []string{"--admin", "http://" + c.admin}

	green.SetErrorRate(1)
	code, stdout, stderr := runCLI(t, env, append([]string{"promote"}, admin...)...)
	if code != 1 || !strings.Contains(stderr, "promote refused") || !strings.Contains(stderr, greenURL+": status 500") || !strings.Contains(stderr, "blue stays live") {
		t.Fatalf("promote onto a green failing completions: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	_, err := client.Promote(t.Context())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "preflight_failed" {
		t.Fatalf("admin API promote: %v, want 409 preflight_failed", err)
	}
	if got := poolOf(t, c.listen); got != "blue" {
		t.Fatalf("traffic served by %s after the refused promotes", got)
	}
	h, err := client.History(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, e := range h.Events {
		if e.Action == "preflight_failed" && strings.Contains(e.Reason, greenURL) {
			refusals++
		}
	}
	if refusals != 2 {
		t.Fatalf("history has %d preflight_failed events naming %s, want 2: %+v", refusals, greenURL, h.Events)
	}

	green.SetErrorRate(0)
	if code, stdout, stderr := runCLI(t, env, append([]string{"promote"}, admin...)...); code != 0 || !strings.Contains(stdout, "green is live") {
		t.Fatalf("promote once green answers: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	blue.SetErrorRate(1)
	code, stdout, stderr = runCLI(t, env, append([]string{"rollback"}, admin...)...)
	if code != 1 || !strings.Contains(stderr, "rollback refused") || !strings.Contains(stderr, blueURL+": status 500") {
		t.Fatalf("rollback onto a blue failing completions: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if got := poolOf(t, c.listen); got != "green" {
		t.Fatalf("traffic served by %s after the refused rollback", got)
	}
}
