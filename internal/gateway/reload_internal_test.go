package gateway

import (
	"slices"
	"testing"

	"github.com/cutover-dev/cutover/internal/config"
)

// TestChangedKeys: a reload names exactly the keys whose value changed,
// nested and list-valued ones included, and nothing for an equal config.
func TestChangedKeys(t *testing.T) {
	base := `listen: 127.0.0.1:8080
admin: {listen: 127.0.0.1:8081}
state_dir: /var/lib/cutover
pools:
  blue: {model: m1, replicas: [http://10.0.0.1:8000]}
  green: {model: m2}
`
	tests := []struct {
		name  string
		extra string
		want  []string
	}{
		{"same", "", nil},
		{"nested duration", "proxy: {idle_timeout: 7m}\n", []string{"proxy.idle_timeout"}},
		{"default written out", "proxy: {drain_timeout: 30s}\n", nil},
		{"two keys", "health: {interval: 1s, rise: 5}\n", []string{"health.interval", "health.rise"}},
		{"hook added", "hooks: {on_fail: [{webhook: 'https://chat.example/h'}]}\n", []string{"hooks.on_fail"}},
	}
	running, err := config.Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := config.Parse([]byte(base + tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			got, err := changedKeys(running, next)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("changedKeys = %q, want %q", got, tt.want)
			}
		})
	}
	// A changed replica list is one key, whatever the change.
	next, err := config.Parse([]byte(base[:len(base)-len("  green: {model: m2}\n")] + "  green: {model: m2, replicas: [http://10.0.0.2:8000]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := changedKeys(running, next); !slices.Equal(got, []string{"pools.green.replicas"}) {
		t.Errorf("replicas added: changedKeys = %q", got)
	}
}

// TestLiveKey: the keys a reload applies, and those that need a restart,
// by name.
func TestLiveKey(t *testing.T) {
	tests := []struct {
		key  string
		live bool
	}{
		{"listen", false},
		{"admin.listen", false},
		{"state_dir", false},
		{"etcd.endpoints", false},
		{"proxy.client", false},
		{"balancer", false},
		{"rollout.retention", false},
		{"validation.deadline", false},
		{"validation.shadow.percent", false},
		{"health.outlier.consecutive_5xx", false},
		{"pools.blue.name", false},
		{"tls.cert_file", false},
		{"proxy.idle_timeout", true},
		{"proxy.max_buffered_bytes", true},
		{"proxy.response_header_timeout", true},
		{"proxy.drain_timeout", true},
		{"auth.api_keys_file", true},
		{"hooks.on_fail", true},
		{"validation.gates.error_rate.threshold", true},
		{"pools.green.replicas", true},
		{"pools.blue.model", true},
		{"pools.blue.api_key_file", true},
		{"log_level", true},
		{"routing.pool_header", true},
		{"health.rise", true},
	}
	for _, tt := range tests {
		if got := liveKey(tt.key); got != tt.live {
			t.Errorf("liveKey(%q) = %v, want %v", tt.key, got, tt.live)
		}
	}
}
