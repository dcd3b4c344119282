package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/config"
)

func TestTracingBlock(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing != nil {
		t.Fatalf("tracing on without the block: %+v", c.Tracing)
	}
	c, err = config.Parse([]byte(minimal + "tracing:\n  endpoint: http://127.0.0.1:4318\n  headers: {x-honeycomb-team: k}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Tracing; tr == nil || tr.Protocol != "http" || tr.Ratio() != 1 || !tr.FollowParent() || tr.Headers["x-honeycomb-team"] != "k" {
		t.Errorf("defaults: %+v", c.Tracing)
	}
	c, err = config.Parse([]byte(minimal + "tracing: {endpoint: otel:4317, protocol: grpc, sample_ratio: 0, insecure: true, parent_based: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Ratio() != 0 || c.Tracing.FollowParent() {
		t.Errorf("sample_ratio 0, parent_based false read as %v, %v", c.Tracing.Ratio(), c.Tracing.FollowParent())
	}
}

func TestTracingValidation(t *testing.T) {
	for _, tt := range []struct {
		name, yaml, key, msg string
	}{
		{"no endpoint", "tracing: {protocol: grpc}\n", "tracing.endpoint", "must be set"},
		{"bad protocol", "tracing: {endpoint: 'otel:4317', protocol: thrift}\n", "tracing.protocol", `"thrift"`},
		{"ratio above 1", "tracing: {endpoint: 'otel:4317', sample_ratio: 1.5}\n", "tracing.sample_ratio", "between 0 and 1"},
		{"negative ratio", "tracing: {endpoint: 'otel:4317', sample_ratio: -0.1}\n", "tracing.sample_ratio", "between 0 and 1"},
		{"not host:port", "tracing: {endpoint: otel}\n", "tracing.endpoint", "host:port"},
		{"bad scheme", "tracing: {endpoint: 'tcp://otel:4317'}\n", "tracing.endpoint", "http://"},
		{"grpc path", "tracing: {endpoint: 'http://otel:4317/v1/traces', protocol: grpc}\n", "tracing.endpoint", "no path"},
		{"query", "tracing: {endpoint: 'http://otel:4318/v1/traces?x=1'}\n", "tracing.endpoint", "no user, query"},
		{"insecure https", "tracing: {endpoint: 'https://otel:4318', insecure: true}\n", "tracing.insecure", "https://"},
		{"bad header", "tracing: {endpoint: 'otel:4317', headers: {'a b': x}}\n", "tracing.headers.a b", "not a valid header"},
		{"unknown key", "tracing: {endpoint: 'otel:4317', ratio: 0.5}\n", "tracing.ratio", "unknown key"},
		{"bad ratio type", "tracing: {endpoint: 'otel:4317', sample_ratio: half}\n", "tracing.sample_ratio", "half"},
	} {
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
