package config

import (
	"fmt"
	"net/textproto"
	"slices"
	"strings"
)

// Rollout strategies.
const (
	// StrategyBlueGreen switches all traffic at once on promote.
	StrategyBlueGreen = "blue-green"
	// StrategyCanary gives the new version a growing share of new
	// requests, step by step, before it is ready to promote.
	StrategyCanary = "canary"
)

// Canary configures the canary strategy.
type Canary struct {
	// Steps are run in order after warm-up (and validation); the
	// deployment is ready after the last one. At least one with the
	// canary strategy.
	Steps []CanaryStep `yaml:"steps"`
}

// CanaryStep is one weight held for at least a pause.
type CanaryStep struct {
	// Weight is the percentage (1-100) of new requests sent to the new
	// version during the step.
	Weight int `yaml:"weight"`
	// Pause is the least time the step lasts; the step then advances
	// once every enabled gate passes. Zero waits for cutover promote.
	Pause Duration `yaml:"pause"`
}

// Affinity configures sticky routing during a canary.
type Affinity struct {
	// Header names the request header whose value keeps requests on one
	// version while the weights hold. Empty: no affinity, every request
	// is picked at random by weight.
	Header string `yaml:"header"`
	// Hash names request body fields, tried in order, whose value keeps
	// requests on one version when they carry no Header value: "user"
	// (OpenAI's top-level user string) and "first_message" (the content
	// of the first message with role user). Empty: none.
	Hash []string `yaml:"hash"`
}

// Affinity hash sources.
const (
	// AffinityUser hashes the body's top-level "user" string.
	AffinityUser = "user"
	// AffinityFirstMessage hashes the content of the first user message.
	AffinityFirstMessage = "first_message"
)

// CanaryStrategy reports whether the canary strategy is configured.
func (r *Rollout) CanaryStrategy() bool { return r.Strategy == StrategyCanary }

func (r *Rollout) validateCanary() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	switch r.Strategy {
	case "", StrategyBlueGreen, StrategyCanary:
	default:
		add("rollout.strategy", "must be %s or %s, got %q", StrategyBlueGreen, StrategyCanary, r.Strategy)
	}
	if r.Strategy == StrategyCanary && len(r.Canary.Steps) == 0 {
		add("rollout.canary.steps", "the canary strategy needs at least one step")
	}
	if r.Strategy != StrategyCanary && len(r.Canary.Steps) > 0 {
		add("rollout.canary.steps", "are only used with rollout.strategy: %s (got %q)", StrategyCanary, r.Strategy)
	}
	prev := 0
	for i, s := range r.Canary.Steps {
		key := fmt.Sprintf("rollout.canary.steps[%d]", i)
		if s.Weight < 1 || s.Weight > 100 {
			add(key+".weight", "must be between 1 and 100, got %d", s.Weight)
		} else if s.Weight < prev {
			add(key+".weight", "must not be below the previous step's %d, got %d", prev, s.Weight)
		} else if i == 0 && s.Weight == 100 {
			// Every request to a version no request measured yet, with
			// no gate and no preflight before it: a switch, not a canary.
			add(key+".weight", "the first step must send only part of the traffic (below 100): a first step of 100 switches every request to a version nothing measured; use rollout.strategy: %s for that", StrategyBlueGreen)
		}
		prev = max(prev, s.Weight)
		if s.Pause < 0 {
			add(key+".pause", "must not be negative, got %s", s.Pause)
		}
	}
	if h := r.Affinity.Header; h != "" && (strings.ContainsAny(h, " :\t\r\n") || textproto.CanonicalMIMEHeaderKey(h) == "") {
		add("rollout.affinity.header", "%q is not a header name", h)
	}
	for i, f := range r.Affinity.Hash {
		if f != AffinityUser && f != AffinityFirstMessage {
			add(fmt.Sprintf("rollout.affinity.hash[%d]", i), "must be %s or %s, got %q", AffinityUser, AffinityFirstMessage, f)
		} else if slices.Index(r.Affinity.Hash, f) < i {
			add(fmt.Sprintf("rollout.affinity.hash[%d]", i), "%q is listed twice", f)
		}
	}
	return errs
}

// Routing configures routing by request header.
type Routing struct {
	// PoolHeader names a request header whose value names the pool that
	// serves the request (blue or green: the standby too, for testers and
	// evals). It only counts with the token of PoolHeaderTokenFile in the
	// header PoolHeader + "-Token"; otherwise both headers are stripped
	// and ignored. Empty: off (the default).
	PoolHeader string `yaml:"pool_header"`
	// PoolHeaderTokenFile is the file holding the token (the path only;
	// the token never goes in the configuration). Required with
	// PoolHeader.
	PoolHeaderTokenFile string `yaml:"pool_header_token_file"`
}

// validateRouting checks routing and the data-plane needs of the canary
// strategy.
func (c *Config) validateRouting() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	builtin := c.Driver == "" || c.Driver == "builtin"
	if c.Rollout.CanaryStrategy() && !builtin {
		add("rollout.strategy", "the canary strategy needs driver: builtin (the gateway picks the pool per request by weight); with driver %s use blue-green", c.Driver)
	}
	r := c.Routing
	if r.PoolHeader == "" {
		if r.PoolHeaderTokenFile != "" {
			add("routing.pool_header_token_file", "is only used with routing.pool_header")
		}
		return errs
	}
	if strings.ContainsAny(r.PoolHeader, " :\t\r\n") {
		add("routing.pool_header", "%q is not a header name", r.PoolHeader)
	}
	if r.PoolHeaderTokenFile == "" {
		add("routing.pool_header", "needs routing.pool_header_token_file: a pool named by a header is only honoured with its token")
	}
	if !builtin {
		add("routing.pool_header", "needs driver: builtin, got %s", c.Driver)
	}
	return errs
}
