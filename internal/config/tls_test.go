package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/config"
)

// TestTLSConfig: each listener's tls block needs both files; client
// certificates only on the admin listener, with TLS.
func TestTLSConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		key        string // "" means valid
	}{
		{"all listeners", "tls: {cert_file: c, key_file: k}\nadmin: {tls: {cert_file: c, key_file: k, client_ca_file: ca}}\npreview: {listen: 127.0.0.1:0, tls: {cert_file: c, key_file: k}}\nupstream_tls: {ca_file: ca}\n", ""},
		{"cert without key", "tls: {cert_file: c}\n", "tls.key_file"},
		{"key without cert", "admin: {tls: {key_file: k}}\n", "admin.tls.cert_file"},
		{"client CA on traffic", "tls: {cert_file: c, key_file: k, client_ca_file: ca}\n", "tls.client_ca_file"},
		{"client CA without TLS", "admin: {tls: {client_ca_file: ca}}\n", "admin.tls.client_ca_file"},
		{"preview TLS without listener", "preview: {tls: {cert_file: c, key_file: k}}\n", "preview.tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(minimal + tt.yaml))
			if tt.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Fields) == 0 || ce.Fields[0].Key != tt.key {
				t.Fatalf("Parse = %v, want an error for %s", err, tt.key)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
		})
	}
}
