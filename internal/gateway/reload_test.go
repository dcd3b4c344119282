package gateway_test

import (
	"errors"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestReloadWithoutConfigFile: a gateway not started from a file (the
// demo) refuses POST /api/v1/reload with 409 instead of pretending.
func TestReloadWithoutConfigFile(t *testing.T) {
	e := newEnv(t, envOptions{replicas: 1})
	_, err := e.admin.Reload(t.Context())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "no_config_file" {
		t.Fatalf("Reload() error = %v, want 409 no_config_file", err)
	}
}
