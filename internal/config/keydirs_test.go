package config_test

import (
	"errors"
	"testing"

	"github.com/cutover-dev/cutover/internal/config"
)

// TestAPIKeyDirs: admin.api_key_dirs takes absolute directories only (a
// relative one would depend on the gateway's working directory); the
// error names the entry.
func TestAPIKeyDirs(t *testing.T) {
	for _, tt := range []struct {
		name, yaml, key string // key "" means valid
	}{
		{"absolute", "admin: {api_key_dirs: [/etc/cutover/keys]}\n", ""},
		{"relative", "admin: {api_key_dirs: [/etc/cutover/keys, keys]}\n", "admin.api_key_dirs[1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(minimal + tt.yaml))
			if tt.key == "" {
				if err != nil || len(c.Admin.APIKeyDirs) != 1 {
					t.Fatalf("Parse = %+v, %v", c, err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Fields) == 0 || ce.Fields[0].Key != tt.key {
				t.Fatalf("Parse = %v, want an error for %s", err, tt.key)
			}
		})
	}
}
