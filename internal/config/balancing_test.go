package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

func TestBalancingDefaultsAndLLM(t *testing.T) {
	c, err := config.Parse([]byte(minimal + "balancer: llm\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	b := c.Balancing
	if c.Balancer != "llm" || b.MetricsInterval.D() != 500*time.Millisecond || b.StaleAfter != 0 ||
		b.QueueWeight != 2 || b.KVWeight != 2 || b.PrefixWeight != 3 || b.MaxQueue != 5 || b.MaxKV != 0.8 ||
		b.PrefixBlockBytes != 256 || b.AffinityEntries != 65536 || b.QueueTimeout.D() != 2*time.Second || b.QueueLength != 1024 {
		t.Fatalf("defaults: balancer %q, %+v", c.Balancer, b)
	}
	c, err = config.Parse([]byte(minimal + "balancer: llm\nbalancing:\n  metrics_interval: 250ms\n  prefix_weight: 5\n  max_queue: 8\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Balancing.MetricsInterval.D() != 250*time.Millisecond || c.Balancing.PrefixWeight != 5 || c.Balancing.MaxQueue != 8 || c.Balancing.KVWeight != 2 {
		t.Fatalf("set: %+v", c.Balancing)
	}
}

func TestBalancingRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"metrics_interval: 0s", "balancing.metrics_interval"},
		{"stale_after: -1s", "balancing.stale_after"},
		{"queue_weight: 0", "balancing.queue_weight"},
		{"kv_weight: -1", "balancing.kv_weight"},
		{"prefix_weight: 0", "balancing.prefix_weight"},
		{"max_queue: 0", "balancing.max_queue"},
		{"max_kv: 1.5", "balancing.max_kv"},
		{"prefix_block_bytes: 8", "balancing.prefix_block_bytes"},
		{"affinity_entries: 0", "balancing.affinity_entries"},
		{"queue_timeout: -1s", "balancing.queue_timeout"},
		{"queue_length: 0", "balancing.queue_length"},
		{"unknown: 1", "balancing.unknown"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			_, err := config.Parse([]byte(minimal + "balancing:\n  " + tc.yaml + "\n"))
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Fields) != 1 || ce.Fields[0].Key != tc.key {
				t.Fatalf("%s: got %v, want one error on %s", tc.yaml, err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %s", err, tc.key)
			}
		})
	}
}
