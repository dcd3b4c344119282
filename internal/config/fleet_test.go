package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

func TestEtcdBlockDefaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal + "name: gw-a\netcd:\n  endpoints: [http://127.0.0.1:2379]\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Etcd == nil {
		t.Fatal("etcd block lost")
	}
	if c.Etcd.Prefix != "/cutover/" || c.Etcd.DialTimeout.D() != 5*time.Second || c.Etcd.SessionTTL.D() != 10*time.Second {
		t.Errorf("defaults: prefix %q dial_timeout %s session_ttl %s", c.Etcd.Prefix, c.Etcd.DialTimeout, c.Etcd.SessionTTL)
	}
	if got := c.FleetName(); got != "gw-a" {
		t.Errorf("FleetName = %q, want gw-a", got)
	}
	// Without the block nothing changes: no etcd, bbolt as before.
	c, err = config.Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Etcd != nil {
		t.Errorf("etcd set without the block: %+v", c.Etcd)
	}
	if got := c.FleetName(); !strings.HasSuffix(got, ":8080") {
		t.Errorf("default FleetName = %q, want hostname:8080", got)
	}
}

func TestEtcdBlockValidation(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"no endpoints", "etcd:\n  prefix: /x/\n", "etcd.endpoints", "at least one"},
		{"bad scheme", "etcd:\n  endpoints: [http://127.0.0.1:2379, tcp://10.0.0.6:2379]\n", "etcd.endpoints[1]", "tcp://10.0.0.6:2379"},
		{"no port", "etcd:\n  endpoints: [http://10.0.0.5]\n", "etcd.endpoints[0]", "host:port"},
		{"path", "etcd:\n  endpoints: [http://10.0.0.5:2379/v3]\n", "etcd.endpoints[0]", "no path"},
		{"http with tls", "etcd:\n  endpoints: [http://10.0.0.5:2379]\n  tls: {ca_file: /ca.pem}\n", "etcd.endpoints[0]", "https"},
		{"prefix", "etcd:\n  endpoints: [http://10.0.0.5:2379]\n  prefix: cutover\n", "etcd.prefix", "start and end with /"},
		{"dial timeout", "etcd:\n  endpoints: [http://10.0.0.5:2379]\n  dial_timeout: -1s\n", "etcd.dial_timeout", "positive"},
		{"ttl", "etcd:\n  endpoints: [http://10.0.0.5:2379]\n  session_ttl: 1s\n", "etcd.session_ttl", "between 2s"},
		{"password without user", "etcd:\n  endpoints: [http://10.0.0.5:2379]\n  password_file: /p\n", "etcd.username", "password_file"},
		{"cert without key", "etcd:\n  endpoints: [https://10.0.0.5:2379]\n  tls: {cert_file: /c.pem}\n", "etcd.tls.key_file", "cert_file"},
		{"unknown key", "etcd:\n  endpoints: [http://10.0.0.5:2379]\n  endpoint: x\n", "etcd.endpoint", "unknown key"},
		{"name", "name: a/b\n", "name", "without spaces or /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(minimal + tt.yaml))
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want *config.Error", err)
			}
			for _, f := range ce.Fields {
				if f.Key == tt.key && strings.Contains(f.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("no error on %s containing %q in:\n%v", tt.key, tt.msg, err)
		})
	}
}
