package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Tracing configures OpenTelemetry tracing: a span per proxied request and
// per control-plane transition, exported over OTLP. When the block is
// absent (Config.Tracing nil) nothing is traced and the data plane pays
// nothing for it.
type Tracing struct {
	// Endpoint is the OTLP collector: host:port, or a URL
	// http(s)://host:port[/path] (with protocol http the path defaults to
	// /v1/traces; with grpc a URL takes no path). Required.
	Endpoint string `yaml:"endpoint"`
	// Protocol is "http" (OTLP/HTTP protobuf, the default) or "grpc".
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share (0–1) of new traces sampled; a request that
	// arrives with a traceparent follows its caller's decision unless
	// ParentBased is false. Nil: 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ParentBased makes a request that arrives with a traceparent follow
	// its caller's sampled flag. False: SampleRatio decides every request,
	// so that clients cannot have their requests traced at will (the
	// caller's trace id is still continued). Nil: true.
	ParentBased *bool `yaml:"parent_based"`
	// Insecure sends to a host:port endpoint without TLS. A URL's scheme
	// decides by itself (http:// is plain text). Default false: TLS.
	Insecure bool `yaml:"insecure"`
	// Headers are sent with every export, such as a vendor's API key
	// header. Empty: none (the exporter then reads
	// OTEL_EXPORTER_OTLP_HEADERS from the environment).
	Headers map[string]string `yaml:"headers"`
}

// Tracing protocols.
var TracingProtocols = []string{"http", "grpc"}

// Ratio is SampleRatio with its default: 1 when unset.
func (t *Tracing) Ratio() float64 {
	if t.SampleRatio == nil {
		return 1
	}
	return *t.SampleRatio
}

// FollowParent is ParentBased with its default: true when unset.
func (t *Tracing) FollowParent() bool { return t.ParentBased == nil || *t.ParentBased }

// applyTracingDefaults fills the tracing block's unset keys; a no-op
// without one.
func (c *Config) applyTracingDefaults() {
	if c.Tracing != nil && c.Tracing.Protocol == "" {
		c.Tracing.Protocol = "http"
	}
}

// validateTracing checks the tracing block; nothing without one.
func (c *Config) validateTracing() []*FieldError {
	t := c.Tracing
	if t == nil {
		return nil
	}
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "tracing." + key, Msg: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(TracingProtocols, t.Protocol) {
		add("protocol", "unknown protocol %q (want http or grpc)", t.Protocol)
	}
	if r := t.Ratio(); !(r >= 0 && r <= 1) {
		add("sample_ratio", "must be between 0 and 1, got %v", r)
	}
	switch ep := t.Endpoint; {
	case ep == "":
		add("endpoint", "must be set: the OTLP collector, such as http://127.0.0.1:4318 (http) or 127.0.0.1:4317 (grpc)")
	case strings.Contains(ep, "://"):
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			add("endpoint", "%q is not a URL: %v", ep, err)
		case u.Scheme != "http" && u.Scheme != "https":
			add("endpoint", "%q must be http://, https:// or host:port", ep)
		case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
			add("endpoint", "%q must be scheme://host:port[/path] (a host, no user, query or fragment)", ep)
		case t.Protocol == "grpc" && u.Path != "" && u.Path != "/":
			add("endpoint", "%q: a grpc endpoint takes no path", ep)
		case u.Scheme == "https" && t.Insecure:
			add("insecure", "is true but tracing.endpoint %q is https://; use http:// for plain text", ep)
		}
	default:
		if _, port, err := net.SplitHostPort(ep); err != nil || port == "" {
			add("endpoint", "%q is neither host:port nor a URL", ep)
		}
	}
	for name, v := range t.Headers {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
			add("headers."+name, "%q is not a valid header (a token name, a value on one line)", name)
		}
	}
	return errs
}
